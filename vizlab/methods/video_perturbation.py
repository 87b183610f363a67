"""Video perturbation methods of Li et al. (WACV 2021): 2D-EP, 3D-EP and STEP, batched over clips × areas.

All three optimise an independent TorchRay-style 2-D parameter grid per frame (the masks of a
clip are (T, H, W)), perturb every frame with a per-frame blur pyramid and score the whole
perturbed clip with the 3-D model; they differ in the regulariser:

    2D-EP  λ · mean_t mean((sort(full_t) − r_a)²)        each frame keeps area a   (ρ = 100)
    3D-EP  λ · mean((sort(full over T·S²) − r_a)²)        the clip keeps area a    (ρ = 100)
    STEP   3D-EP's term with λ_t = 300·1.0008668^t        (ρ = 1)
           + λ_core · R_core, λ_core = 300 from iteration 101, R_core = the smoothness term of
           a 7×11×11 ellipsoid kernel at stride (1, 11, 11) (see objectives.CoreLoss)

Model loss ρ·(−log p_t) (preserve), SGD lr 0.05, momentum = dampening = 0.9, 2000 iterations,
no jitter, blur perturbation with L = 8 levels up to σ = 20 px, mask step 7 and σ = 11 for
112-px frames, 23 otherwise (the seed's main.py rule; `sigma` overrides it).

Departures from the seed code (each switchable back with `strict_original=True`):
  - every listed area is optimised (the seed honours areas[0] only);
  - STEP's k = ⌈a·T·S²/ΣK⌉ uses the kernel's real number of ones ΣK (311 for the ellipsoid), the
    same count it normalises by; the seed uses the continuous estimate int(7·11·11·0.5236) = 443;
  - the returned masks are those of the final parameters (the seed's are one step stale);
  - −log p uses log-softmax, finite where the seed's log(softmax) underflows to −inf.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from vizlab.errors import ConfigError
from vizlab.methods.perturbation.mask_generator import MaskGenerator
from vizlab.methods.perturbation.method import PerturbationMethod, check_choice, check_number
from vizlab.methods.perturbation.objectives import CORE_SHAPES, CoreLoss
from vizlab.methods.perturbation.scale import original_scale
from vizlab.methods.registry import register


def seed_sigma(width: int) -> float:
    """The seed's mask smoothness: 11 px for frames up to 112 px wide, else 23 px."""
    return original_scale(width, video=True).sigma


class _VideoPerturbation(PerturbationMethod):
    """Shared options of 2D-EP, 3D-EP and STEP. Input (N, C, T, H, W); saliency (N, T, H, W)."""

    input_dims = 5
    default_growth = 1.0
    default_reward_weight = 100.0

    def __init__(self, model: nn.Module, areas: float | Sequence[float] = (0.1,), variant: str = "preserve",
                 perturbation: str = "blur", reward: str = "log", max_iter: int = 2000, num_levels: int = 8,
                 max_blur: float | None = None, step: int | None = None, sigma: float | None = None, pooling: str = "softmax",
                 jitter: bool = False, lr: float = 0.05, momentum: float = 0.9, dampening: float = 0.9,
                 area_weight: float = 300.0, area_growth: float | None = None, reward_weight: float | None = None,
                 area_warmup: int = 100, smooth: float = 0.0, early_stop: bool = False, patience: int = 50, tol: float = 1e-4,
                 strict_original: bool = False, progress: bool = True, batch_size: int | None = None) -> None:
        super().__init__(model, areas=areas, variant=variant, perturbation=perturbation, reward=reward,
                         max_iter=max_iter, num_levels=num_levels, max_blur=max_blur, step=step, sigma=sigma,
                         pooling=pooling, jitter=jitter, lr=lr, momentum=momentum, dampening=dampening,
                         area_weight=area_weight,
                         area_growth=self.default_growth if area_growth is None else area_growth,
                         reward_weight=self.default_reward_weight if reward_weight is None else reward_weight,
                         area_warmup=area_warmup, smooth=smooth, early_stop=early_stop, patience=patience, tol=tol,
                         strict_original=strict_original, progress=progress, batch_size=batch_size)

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
    sized from the frame (the seed's 7 / 11 / 20 at 112 px, σ 23 above), area_warmup 100, no jitter.
    """

    name = "ep2d"
    summary = "per-frame extremal perturbation: every frame's mask keeps area a (Li et al. 2021)"
    defaults_note = ("the video seed's: −log p reward with ρ = 100, λ = 300 constant, 2000 iterations, lr 0.05; "
                     "step / σ / max blur sized from the frame (7 / 11 / 20 at 112 px); `area_warmup` 100")
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
    iterations), and the core term: core_weight 300 from iteration core_start = 101, kernel
    core_shape "ellipsoid" of core_size (7, 11, 11) = (frames, rows, cols) at stride (1, 11, 11),
    randomly tie-broken positions (`core_shuffle`, reproducible through `seed`).
    """

    name = "step"
    summary = "STEP: 3D-EP plus a spatio-temporal smoothness (core) term that favours one smooth, compact tube"
    defaults_note = ("as `ep3d` but ρ = 1, λ doubling every 800 iterations, core term 300 from iteration 101 with a "
                     "7×11×11 ellipsoid kernel (not scaled with the input)")
    area_mode = "global"
    default_growth = 1.0008668
    default_reward_weight = 1.0

    def __init__(self, model: nn.Module, areas: float | Sequence[float] = (0.1,), variant: str = "preserve",
                 perturbation: str = "blur", reward: str = "log", max_iter: int = 2000, num_levels: int = 8,
                 max_blur: float | None = None, step: int | None = None, sigma: float | None = None, pooling: str = "softmax",
                 jitter: bool = False, lr: float = 0.05, momentum: float = 0.9, dampening: float = 0.9,
                 area_weight: float = 300.0, area_growth: float | None = None, reward_weight: float | None = None,
                 area_warmup: int = 100, core_weight: float = 300.0, core_start: int = 101,
                 core_size: Sequence[int] = (7, 11, 11), core_shape: str = "ellipsoid", core_shuffle: bool = True,
                 seed: int | None = 0, smooth: float = 0.0, early_stop: bool = False, patience: int = 50,
                 tol: float = 1e-4, strict_original: bool = False, progress: bool = True,
                 batch_size: int | None = None) -> None:
        super().__init__(model, areas=areas, variant=variant, perturbation=perturbation, reward=reward,
                         max_iter=max_iter, num_levels=num_levels, max_blur=max_blur, step=step, sigma=sigma,
                         pooling=pooling, jitter=jitter, lr=lr, momentum=momentum, dampening=dampening,
                         area_weight=area_weight, area_growth=area_growth, reward_weight=reward_weight,
                         area_warmup=area_warmup, smooth=smooth, early_stop=early_stop, patience=patience, tol=tol,
                         strict_original=strict_original, progress=progress, batch_size=batch_size)
        check_number("core_weight", core_weight, 0)
        check_number("core_start", core_start, 0, integer=True)
        check_choice("core_shape", core_shape, CORE_SHAPES)
        size = list(core_size) if not isinstance(core_size, int) else []
        if len(size) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
            raise ConfigError(f"core_size must be three positive integers (frames, rows, cols); got {core_size!r}.")
        if seed is not None:
            check_number("seed", seed, 0, integer=True)
        self.core_size, self.core_shape, self.core_shuffle, self.seed = tuple(size), core_shape, bool(core_shuffle), seed
        self.schedule = dataclasses.replace(self.schedule, core_weight=float(core_weight), core_start=int(core_start))

    def make_core(self, frames: int, generator: MaskGenerator, areas: torch.Tensor,
                  device: torch.device) -> CoreLoss | None:
        if self.schedule.core_weight == 0 or self.schedule.core_start >= self.schedule.max_iter:
            return None  # the core term never switches on (short runs need no 7-frame clip)
        rng = torch.Generator()
        if self.seed is None:
            rng.seed()
        else:
            rng.manual_seed(int(self.seed))
        return CoreLoss(frames, tuple(generator.shape_out), areas, size=self.core_size, shape=self.core_shape,
                        strict_original=self.strict_original, shuffle=self.core_shuffle, generator=rng,
                        device=device)
