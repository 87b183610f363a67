"""Octaves and their linear schedules (lr, mask σ, blur σ, TV weight, λ_L1).

An octave is one `generate()` call of the original: it zooms the images by `scale`, then runs
`iterations` steps whose five scheduled values move linearly from `start_*` to `end_*`.
Octaves chain: the global iteration count (which drives every periodic event: blur and TV every
10 iterations, brightness, crop windows, saves) continues from one octave to the next, and each
octave's schedule runs from its start (at its first iteration) to its end (at its last).

`strict_original` (bug "schedules", issue 13 (b)): the original's second call restarts its count
at the previous total (repeating that iteration, so it runs iterations + 1 steps) and evaluates
the schedule over 1 … previous total + iterations, so it starts near the schedule's midpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from vizlab.errors import ConfigError

SCHEDULED = ("lr", "mask_sigma", "sigma", "denoise_weight", "lambda")


def linear_value(start: float, end: float, i: int, n: int) -> float:
    """The original's `find_new_val`: `start` at i = 1, `end` at i = n, linear in between
    (start + (end − start)·(i − 1)/(n − 1)); `start` when n = 1."""
    if n <= 1:
        return float(start)
    return float(start + (end - start) * (i - 1) / (n - 1))


@dataclass(frozen=True)
class Octave:
    """One octave; the defaults are the original demo's (`__main__` of vis.py, 512-px images).

    scale: zoom of the images into the canvas that crops are taken from (1: no canvas).
    *_lr: SGD learning rate · *_mask_sigma: centre-mask σ in the original's units (effective Gaussian
    std σ/6.004 px, see regularisers.centre_mask) · *_sigma: Gaussian blur σ (px) · *_denoise_weight:
    TV-Bregman weight (smaller = stronger) · *_lambda: weight of the L1 penalty.
    window: std of the crop jitter as a fraction of the canvas margin · window_step: a new crop every
    this many iterations · brightness_step: +brightness every this many iterations (at blur steps).
    iterations: this octave's steps (None: the task's `iterations`).
    """

    scale: float = 1.2
    start_lr: float = 0.5
    end_lr: float = 0.08
    start_mask_sigma: float = 420.0
    end_mask_sigma: float = 340.0
    start_sigma: float = 0.9
    end_sigma: float = 0.2
    start_denoise_weight: float = 2.0
    end_denoise_weight: float = 8.0
    start_lambda: float = 1e-4
    end_lambda: float = 5e-4
    window: float = 0.4
    window_step: int = 400
    brightness_step: int = 50
    iterations: int | None = None

    def values(self, position: int, length: int) -> dict[str, float]:
        """The five scheduled values at step `position` (1-based) of a schedule `length` long."""
        return {key: linear_value(getattr(self, f"start_{key}"), getattr(self, f"end_{key}"), position, length)
                for key in SCHEDULED}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | Octave, index: int = 0) -> Octave:
        """An Octave from a mapping of its fields (missing keys keep the defaults); checks every value."""
        if isinstance(cfg, Octave):
            octave = cfg
        else:
            if not isinstance(cfg, Mapping):
                raise ConfigError(f"task.octaves[{index}] must be a mapping of octave settings, got {cfg!r}.")
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(cfg) - known)
            if unknown:
                raise ConfigError(f"task.octaves[{index}] has unknown key(s) {unknown}; valid keys: "
                                  f"{', '.join(sorted(known))}.")
            octave = cls(**dict(cfg))
        octave.check(index)
        return octave

    def check(self, index: int = 0) -> None:
        where = f"task.octaves[{index}]"
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "iterations":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                    raise ConfigError(f"{where}.iterations must be null or an integer >= 1, got {value!r}.")
            elif f.name in ("window_step", "brightness_step"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError(f"{where}.{f.name} must be an integer >= 1, got {value!r}.")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ConfigError(f"{where}.{f.name} must be a number, got {value!r}.")
        if self.scale < 1:
            raise ConfigError(f"{where}.scale must be >= 1 (the canvas is the image zoomed by it), got {self.scale}.")
        for key in ("lr", "mask_sigma", "denoise_weight"):
            for end in ("start", "end"):
                if getattr(self, f"{end}_{key}") <= 0:
                    raise ConfigError(f"{where}.{end}_{key} must be > 0, got {getattr(self, f'{end}_{key}')}.")
        for key in ("sigma", "lambda"):
            for end in ("start", "end"):
                if getattr(self, f"{end}_{key}") < 0:
                    raise ConfigError(f"{where}.{end}_{key} must be >= 0, got {getattr(self, f'{end}_{key}')}.")
        if self.window < 0:
            raise ConfigError(f"{where}.window must be >= 0, got {self.window}.")


@dataclass(frozen=True)
class Step:
    """One optimisation step: global iteration `i` (drives the periodic events), octave index, and
    the schedule position `position` of a schedule `length` long."""

    i: int
    octave: int
    position: int
    length: int


def plan_steps(octaves: Sequence[Octave], iterations: int, original: bool = False) -> list[Step]:
    """Every step of a chain of octaves, in order.

    Fixed (default): octave j covers global iterations n_{j-1}+1 … n_j and its schedule runs over
    its own steps (position 1 … iterations_j). `original=True` reproduces the original's chaining:
    octave j > 0 runs global iterations n_{j-1} … n_{j-1}+iterations_j (iterations_j + 1 steps, the
    first repeats the previous octave's last count) with schedule positions equal to the global
    count over a length of n_{j-1}+iterations_j, i.e. it starts near the schedule's midpoint.
    """
    if not octaves:
        raise ConfigError("task.octaves is empty; give at least one octave.")
    steps: list[Step] = []
    total = 0
    for j, octave in enumerate(octaves):
        n = octave.iterations or iterations
        if original and j > 0:
            steps += [Step(i, j, i, total + n) for i in range(total, total + n + 1)]
        else:
            steps += [Step(total + p, j, p, n) for p in range(1, n + 1)]
        total += n
    return steps
