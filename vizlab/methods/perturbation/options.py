"""The options of the extremal-perturbation family as data: one frozen dataclass per default set.

    ExtremalOptions   image EP (TorchRay's defaults)
    VideoOptions      2D-EP / 3D-EP (the video seed's: −log p with ρ = 100, 2000 iterations, lr 0.05)
    STEPOptions       STEP (ρ = 1, λ doubling every 800 iterations, plus the core term)

Each method class names its `options_type`; its constructor takes `options=` (an instance) and/or
keyword overrides, `registry.method_parameters` reads the fields and their defaults, and the
conf/method/*.yaml files must list the same keys and defaults (tests/test_config.py checks it).
Every value is checked in `__post_init__`, so a bad value fails where it is made, with one
ConfigError that names the option.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from vizlab.errors import ConfigError
from vizlab.methods.perturbation.mask_generator import POOLINGS
from vizlab.methods.perturbation.objectives import CORE_COUNTS, CORE_SHAPES, REWARDS, VARIANTS, checked_core_kernel
from vizlab.methods.perturbation.pyramid import PERTURBATIONS
from vizlab.validation import check_choice, check_fields, check_number

OptionsT = TypeVar("OptionsT", bound="ExtremalOptions")


def check_areas(areas: float | Sequence[float]) -> tuple[float, ...]:
    """One area or a non-empty list of areas, each strictly between 0 and 1, as a tuple."""
    values = [areas] if isinstance(areas, (int, float)) else list(areas)
    if not values:
        raise ConfigError("areas must list at least one target area, e.g. areas=[0.1].")
    for a in values:
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a < 1:
            raise ConfigError(f"Every area must be a fraction strictly between 0 and 1 (e.g. 0.1 = 10% of the "
                              f"input); got {a!r} in areas={values}.")
    return tuple(float(a) for a in values)


@dataclass(frozen=True)
class ExtremalOptions:
    """Image extremal perturbation (TorchRay's defaults).

    areas: target areas, fractions of the input, optimised together (default (0.1,)).
    variant: preserve | delete | dual. perturbation: blur (σ up to max_blur px) | fade.
    reward: simple (target logit) | contrastive (target − best other) | log (log-probability).
    max_iter 800 · num_levels 8 (pyramid levels) · step / sigma / max_blur None = sized from the
    input by `scale.scale_for` · pooling softmax | sigmoid | sum · jitter (flip on even iterations).
    SGD: lr 0.01, momentum 0.9, dampening 0.9. Area term λ_t = area_weight · area_growth^t
    (300 · 1.0035^t); the model term is scaled by reward_weight (ρ). area_warmup: iterations of the
    relaxed (mean-only) area term before the sorted one (issue 17's fix; None = max_iter // 2;
    0 = the originals). restarts: optimisations per mask, the one with the lowest final objective
    kept (1 = the originals; the first start is all ones, the others all ones minus
    restart_noise · U(0, 1), seeded, so runs repeat); the objective has many local minima, and
    best-of-4 reaches the oracle's objective on 12 of 16 shapes images against 7 of 16 (4× the time).
    smooth: Gaussian smoothing of the result, σ = smooth · min(H, W). early_stop / patience / tol:
    per-mask early stopping. strict_original: the original code's behaviour. progress: tqdm bar.
    batch_size: inputs optimised together (None = the whole batch).
    """

    areas: float | Sequence[float] = (0.1,)
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
    area_warmup: int | None = None
    restarts: int = 1
    restart_noise: float = 0.5
    smooth: float = 0.0
    early_stop: bool = False
    patience: int = 50
    tol: float = 1e-4
    strict_original: bool = False
    progress: bool = True
    batch_size: int | None = None

    def __post_init__(self) -> None:
        check_fields("method", type(self), dataclasses.asdict(self))
        object.__setattr__(self, "areas", check_areas(self.areas))
        check_choice("variant", self.variant, VARIANTS)
        check_choice("perturbation", self.perturbation, PERTURBATIONS)
        check_choice("reward", self.reward, REWARDS)
        check_choice("pooling", self.pooling, POOLINGS)
        check_number("max_iter", self.max_iter, 1, integer=True)
        check_number("num_levels", self.num_levels, 2, integer=True)
        check_number("max_blur", self.max_blur, 0, low_open=True, optional=True)
        check_number("step", self.step, 1, integer=True, optional=True)
        check_number("sigma", self.sigma, 0, low_open=True, optional=True)
        check_number("lr", self.lr, 0, low_open=True)
        check_number("momentum", self.momentum, 0, 1, high_open=True)
        check_number("dampening", self.dampening, 0, 1)
        check_number("area_weight", self.area_weight, 0)
        check_number("area_growth", self.area_growth, 0, low_open=True)
        check_number("reward_weight", self.reward_weight, 0, low_open=True)
        check_number("area_warmup", self.area_warmup, 0, integer=True, optional=True)
        check_number("restarts", self.restarts, 1, integer=True)
        check_number("restart_noise", self.restart_noise, 0, 1)
        check_number("smooth", self.smooth, 0)
        check_number("patience", self.patience, 1, integer=True)
        check_number("tol", self.tol, 0)
        check_number("batch_size", self.batch_size, 1, integer=True, optional=True)

    @classmethod
    def make(cls: type[OptionsT], options: ExtremalOptions | None = None, **overrides: Any) -> OptionsT:
        """`options` (an instance of this class, or None for the defaults) with `overrides` replaced;
        unknown override names raise a ConfigError listing the valid ones."""
        if options is not None and not isinstance(options, cls):
            raise ConfigError(f"options must be a {cls.__name__}; got {type(options).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no option(s) {unknown}. Valid options: {sorted(names)}.")
        return cls(**overrides) if options is None else dataclasses.replace(options, **overrides)


@dataclass(frozen=True)
class VideoOptions(ExtremalOptions):
    """2D-EP and 3D-EP (the video seed's defaults): reward log with ρ = reward_weight 100, λ = 300
    constant (area_growth 1), 2000 iterations, lr 0.05, no jitter; otherwise as ExtremalOptions
    (step / sigma / max_blur sized from the frame: the seed's 7 / 11 / 20 at 112 px)."""

    reward: str = "log"
    max_iter: int = 2000
    jitter: bool = False
    lr: float = 0.05
    area_growth: float = 1.0
    reward_weight: float = 100.0


@dataclass(frozen=True)
class STEPOptions(VideoOptions):
    """STEP: VideoOptions with ρ = 1 and λ doubling every 800 iterations (area_growth 1.0008668),
    plus the core term: core_weight 300 from iteration core_start, kernel core_shape
    ellipsoid | cylinder of core_size (frames, rows, cols) at stride (1, rows, cols), positions
    tie-broken at random (core_shuffle) from `seed` (None: a fresh permutation per call).

    core_start None: with the sorted area term, i.e. after the warm-up (`area_warmup`); with no
    warm-up (area_warmup 0, strict_original) the seed's 101. core_size None: sized from the clip,
    `scale.core_size_for` (the seed's (7, 11, 11) at 16 frames of 112 px). core_count: how many
    kernel positions the term asks to be fully on, "share" (⌈a · positions⌉, default) or "volume"
    (⌈a·T·S²/ΣK⌉); strict_original uses the seed's 443-voxel estimate for ΣK."""

    area_growth: float = 1.0008668
    reward_weight: float = 1.0
    core_weight: float = 300.0
    core_start: int | None = None
    core_size: Sequence[int] | None = None
    core_shape: str = "ellipsoid"
    core_count: str = "share"
    core_shuffle: bool = True
    seed: int | None = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("core_weight", self.core_weight, 0)
        check_number("core_start", self.core_start, 0, integer=True, optional=True)
        check_choice("core_shape", self.core_shape, CORE_SHAPES)
        check_choice("core_count", self.core_count, CORE_COUNTS)
        if self.core_size is not None:
            size = list(self.core_size) if not isinstance(self.core_size, (int, str)) else []
            if len(size) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
                raise ConfigError(f"core_size must be three positive integers (frames, rows, cols) or null; "
                                  f"got {self.core_size!r}.")
            object.__setattr__(self, "core_size", tuple(size))
            checked_core_kernel(self.core_size, self.core_shape)
        check_number("seed", self.seed, 0, integer=True, optional=True)
