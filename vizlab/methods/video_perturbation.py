"""Video perturbation methods of Li et al. (WACV 2021): 2D-EP, 3D-EP and STEP, batched over clips × areas.

All three optimise an independent TorchRay-style 2-D parameter grid per frame (the masks of a
clip are (T, H, W)), perturb every frame with a per-frame blur pyramid and score the whole
perturbed clip with the 3-D model; they differ in the regulariser:

    2D-EP  λ · mean_t mean((sort(full_t) − r_a)²)        each frame keeps area a   (ρ = 100)
    3D-EP  λ · mean((sort(full over T·S²) − r_a)²)        the clip keeps area a    (ρ = 100)
    STEP   3D-EP's term with λ_t = 300·1.0008668^t        (ρ = 1)
           + λ_core · R_core, λ_core = 300 once the sorted area term starts, R_core = the
           smoothness term of an ellipsoid kernel (the seed's 7×11×11 at 16 frames of 112 px,
           sized from the clip) at stride (1, rows, cols) (see objectives.CoreLoss)

Model loss ρ·(−log p_t) (preserve), SGD lr 0.05, momentum = dampening = 0.9, 2000 iterations,
no jitter, blur perturbation with L = 8 levels up to σ = 20 px; mask step, σ and the strongest
blur sized from the frame (`scale.scale_for`: the seed's 7 / 11 / 20 at 112 px).

Departures from the seed code (each switchable back with `strict_original=True`):
  - every listed area is optimised (the seed honours areas[0] only);
  - a relaxed (mean-only) area term for the first half of the run (`area_warmup`);
  - sizes from the input: step, σ, max blur (`scale_for`) and STEP's kernel (`core_size_for`);
  - STEP's core term starts with the sorted area term (the seed: iteration 101) and asks for
    k = ⌈a · positions⌉ kernel positions fully on, the share that matches the area term (the seed:
    ⌈a·T·S²/443⌉, with the continuous estimate int(7·11·11·0.5236) = 443 of the kernel's 311 ones,
    which ignores that the kernels overlap in time);
  - the returned masks are those of the final parameters (the seed's are one step stale);
  - −log p uses log-softmax, finite where the seed's log(softmax) underflows to −inf.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch
from torch import nn

from vizlab.methods.perturbation.mask_generator import MaskGenerator
from vizlab.methods.perturbation.method import PerturbationMethod
from vizlab.methods.perturbation.objectives import CoreLoss
from vizlab.methods.perturbation.options import STEPOptions, VideoOptions
from vizlab.methods.perturbation.scale import ORIGINAL_CORE_SIZE, core_size_for, original_scale
from vizlab.methods.registry import register

SEED_CORE_START = 101  # the seed switches the core term on after iteration 100


def seed_sigma(width: int) -> float:
    """The seed's mask smoothness: 11 px for frames up to 112 px wide, else 23 px."""
    return original_scale(width, video=True).sigma


class _VideoPerturbation(PerturbationMethod):
    """Shared options of 2D-EP, 3D-EP and STEP. Input (N, C, T, H, W); saliency (N, T, H, W)."""

    input_dims = 5
    options_type = VideoOptions

    def used_areas(self) -> tuple[float, ...]:
        if self.strict_original and len(self.areas) > 1:
            warnings.warn(f"{self.name}: strict_original=True optimises areas[0] = {self.areas[0]} only, as the "
                          f"original does; ignoring {list(self.areas[1:])}.", stacklevel=3)
            return self.areas[:1]
        return self.areas


@register
class EP2D(_VideoPerturbation):
    """2D-EP: per-frame extremal perturbation — every frame's mask keeps area a.

    Defaults: areas [0.1], preserve, blur, reward log (ρ = 100), 2000 iterations, lr 0.05,
    momentum = dampening = 0.9, λ = 300 constant (area_growth 1), step / sigma / max_blur null =
    sized from the frame (the seed's 7 / 11 / 20 at 112 px, σ 23 above), area_warmup null (=
    max_iter // 2: a mean-only area term for the first half of the run), no jitter.
    """

    name = "ep2d"
    summary = "per-frame extremal perturbation: every frame's mask keeps area a (Li et al. 2021)"
    defaults_note = ("the video seed's: −log p reward with ρ = 100, λ = 300 constant, 2000 iterations, lr 0.05; "
                     "step / σ / max blur sized from the frame (7 / 11 / 20 at 112 px); a mean-only area term for the first half of the run (`area_warmup`)")
    area_mode = "per_frame"


@register
class EP3D(_VideoPerturbation):
    """3D-EP: the clip's masks together keep area a (free to move mass between frames). Defaults as EP2D."""

    name = "ep3d"
    summary = "3D-EP: one mask tube whose total area is a, free to move mass between frames"
    defaults_note = "as `ep2d`, the area counted over the whole clip"
    area_mode = "global"


@register
class STEP(_VideoPerturbation):
    """STEP (spatio-temporal extremal perturbation): 3D-EP plus a smoothness ("core") term.

    Defaults differ from 3D-EP in ρ = reward_weight 1, area_growth 1.0008668 (λ doubles every 800
    iterations), and the core term: core_weight 300 from core_start (null: with the sorted area
    term, after the warm-up; the seed: 101), kernel core_shape "ellipsoid" of core_size (null:
    sized from the clip, `scale.core_size_for`; the seed: (7, 11, 11)) = (frames, rows, cols) at
    stride (1, rows, cols), k = ⌈a · positions⌉ positions fully on (`core_count` "share"), randomly
    tie-broken positions (`core_shuffle`, reproducible through `seed`).
    """

    name = "step"
    summary = "STEP: 3D-EP plus a spatio-temporal smoothness (core) term that favours one smooth, compact tube"
    defaults_note = ("as `ep3d` but ρ = 1, λ doubling every 800 iterations, and a core term of weight 300 that starts "
                     "with the sorted area term (the seed: iteration 101), an ellipsoid kernel sized from the clip "
                     "(the seed's 7×11×11 at 16 frames of 112 px) and k = ⌈a · positions⌉ blobs on (the seed: "
                     "⌈a·T·S²/443⌉)")
    area_mode = "global"
    options_type = STEPOptions

    def __init__(self, model: nn.Module, options: STEPOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(model, options, **overrides)
        o = self.options
        self.core_size, self.core_shape, self.core_shuffle, self.seed = o.core_size, o.core_shape, o.core_shuffle, o.seed
        self.core_count = o.core_count
        self.schedule = dataclasses.replace(self.schedule, core_weight=float(o.core_weight),
                                            core_start=self.core_start_iteration(o.core_start))

    def core_start_iteration(self, core_start: int | None) -> int:
        """core_start, or for None the first iteration of the sorted area term (the warm-up's length):
        the core term sorts its positions as the area term sorts the mask, and switched on while the
        relaxed warm-up is still shrinking the mask it would fix the blobs' layout as early as a short
        warm-up did (issue 17's second defect). With no warm-up, the seed's 101."""
        if core_start is not None:
            return int(core_start)
        warmup = self.schedule.area_warmup
        return SEED_CORE_START if warmup == 0 else warmup

    def kernel_size(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The core kernel (frames, rows, cols) for a clip: core_size, or for None the rule
        `scale.core_size_for` (strict_original: the seed's (7, 11, 11))."""
        if self.core_size is not None:
            return tuple(self.core_size)
        return ORIGINAL_CORE_SIZE if self.strict_original else core_size_for(frames, min(height, width))

    def make_core(self, frames: int, generator: MaskGenerator, areas: torch.Tensor,
                  device: torch.device) -> CoreLoss | None:
        if self.schedule.core_weight == 0 or self.schedule.core_start >= self.schedule.max_iter:
            return None  # the core term never switches on (short runs need no 7-frame clip)
        rng = torch.Generator()
        if self.seed is None:
            rng.seed()
        else:
            rng.manual_seed(int(self.seed))
        return CoreLoss(frames, tuple(generator.shape_out), areas, size=self.kernel_size(frames, *generator.shape),
                        shape=self.core_shape, strict_original=self.strict_original, count=self.core_count,
                        shuffle=self.core_shuffle, generator=rng, device=device)
