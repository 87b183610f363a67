"""The options of the extremal-perturbation family as data: one frozen dataclass per member.

`PerturbationOptions` holds every option image EP has, with TorchRay's defaults; the video
members override the defaults the seed changed (`VideoPerturbationOptions`) and STEP adds its
core term (`StepOptions`). A method class names its dataclass in `options_class`; the registry's
`method_parameters(name)` reads the fields (names and defaults) from it, `build()` checks options
against them, and `conf/method/<name>.yaml` lists the same keys with the same defaults (tested).

`step`, `sigma` and `max_blur` default to None: resolved from the input size by `scale_for`
(see there), so that a 48-px clip does not get masks and blurs chosen for 112–224 px.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PerturbationOptions:
    """Image extremal perturbation (TorchRay's defaults; sizes resolved by `scale_for`).

    areas: target areas, fractions of the input, optimised together. variant: preserve | delete |
    dual. perturbation: blur | fade. reward: simple | contrastive | log. max_iter: SGD iterations.
    num_levels: pyramid levels. max_blur: strongest blur σ (px; None: from the input size).
    step / sigma: mask parameter spacing and smoothness (px; None: from the input size).
    pooling: softmax | sigmoid | sum. jitter: flip on even iterations. lr, momentum, dampening:
    SGD. area_weight λ_0, area_growth (λ_t = λ_0·growth^t), reward_weight ρ. area_warmup:
    iterations of the relaxed area term (its mean only) before the sorted one. smooth: result
    smoothing (σ = smooth·min(H, W)). early_stop / patience / tol: per-mask early stopping.
    strict_original: the original's behaviour where vizlab departs from it. progress: tqdm bar.
    batch_size: samples per optimisation (None: all).
    """

    areas: tuple[float, ...] = (0.1,)
    variant: str = "preserve"
    perturbation: str = "blur"
    reward: str = "simple"
    max_iter: int = 800
    num_levels: int = 8
    max_blur: float | None = None
    step: int | None = None
    sigma: float | None = None
    pooling: str = "softmax"
    jitter: bool = True
    lr: float = 0.01
    momentum: float = 0.9
    dampening: float = 0.9
    area_weight: float = 300.0
    area_growth: float = 1.0035
    reward_weight: float = 1.0
    area_warmup: int = 0
    smooth: float = 0.0
    early_stop: bool = False
    patience: int = 50
    tol: float = 1e-4
    strict_original: bool = False
    progress: bool = True
    batch_size: int | None = None

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """{option: default} in field order (what `method_parameters` reports)."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    def replace(self, **changes: Any) -> PerturbationOptions:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class VideoPerturbationOptions(PerturbationOptions):
    """2D-EP / 3D-EP (Li et al. 2021): the seed's −log p reward with ρ = 100, 2000 iterations, lr 0.05,
    constant λ = 300, no jitter."""

    reward: str = "log"
    max_iter: int = 2000
    jitter: bool = False
    lr: float = 0.05
    area_growth: float = 1.0
    reward_weight: float = 100.0


@dataclass(frozen=True)
class StepOptions(VideoPerturbationOptions):
    """STEP: ρ = 1, λ doubling every 800 iterations, and the core term (weight 300 from iteration 101,
    a 7×11×11 ellipsoid at stride (1, 11, 11), seeded random tie-break)."""

    area_growth: float = 1.0008668
    reward_weight: float = 1.0
    core_weight: float = 300.0
    core_start: int = 101
    core_size: tuple[int, int, int] = (7, 11, 11)
    core_shape: str = "ellipsoid"
    core_shuffle: bool = True
    seed: int | None = 0


# --- sizes from the input size ------------------------------------------------------------------
@dataclass(frozen=True)
class Scale:
    """Resolved mask step (px, int), mask smoothness sigma (px) and strongest blur max_blur (px)."""

    step: int
    sigma: float
    max_blur: float


def scale_for(side: int, video: bool) -> Scale:
    """The family's size rule for an input whose shorter side is `side` px.

    The originals fixed their sizes for 112–224-px inputs: TorchRay's image EP step 7, σ 21 (= 3·step),
    blur 20 at 224; the video seed step 7, σ 11 at 112 and 23 above, blur 20. Mask resolution and
    blur are scale quantities, so they scale with the input, anchored at those values:

        image:  σ = 21·side/224,                        step = max(1, round(σ/3))
        video:  σ = 11·side/112 (side ≤ 112), 23 above;  step = max(1, round(7·side/112)) up to 7
        both:   max_blur = 20·min(1, side/112)

    So 224-px images get TorchRay's (7, 21, 20), 112-px clips the seed's (7, 11, 20) and larger
    clips (7, 23, 20); a 64-px image gets (2, 6, 11.4), a 48-px clip (3, 4.71, 8.57). The learning
    rate needs no rule: with step and σ proportional to the input, every mask parameter covers the
    same share of the (full) mask, so the per-parameter gradients of the area term — and of the model
    term for objects of the same relative size — do not change with the input size.
    """
    side = int(side)
    if video:
        sigma = 11.0 * side / 112 if side <= 112 else 23.0
        step = min(7, max(1, round(7 * side / 112)))
    else:
        sigma = 21.0 * side / 224
        step = max(1, round(sigma / 3))
    return Scale(step=step, sigma=sigma, max_blur=20.0 * min(1.0, side / 112))


def original_scale(width: int, video: bool) -> Scale:
    """The originals' fixed sizes (strict_original): TorchRay (7, 21, 20); the video seed (7, 11 if
    the frame is at most 112 px wide else 23, 20)."""
    if video:
        return Scale(step=7, sigma=11.0 if width <= 112 else 23.0, max_blur=20.0)
    return Scale(step=7, sigma=21.0, max_blur=20.0)


def blob_share(sigma: float, side: int) -> float:
    """The side of the smallest mask blob (its flat top, σ px, plus the fall-off: about 2σ) as a
    share of the input side; TorchRay's 224-px default gives 0.19."""
    return 2 * sigma / max(1, side)


RESOLVABLE_SHARE = 0.3  # blobs wider than this share of the input side cannot outline objects of the data's scale
