"""`PerturbationMethod`: what image EP and the video methods share — option checks, the clean
forward for targets, pyramid and generator set-up, chunking, and the result object."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vizlab.errors import ConfigError, InputError
from vizlab.methods.base import AttributionMethod, Explanation, Target, logits_of, resolve_target
from vizlab.methods.perturbation.mask_generator import POOLINGS, MaskGenerator
from vizlab.methods.perturbation.objectives import REWARDS, VARIANTS, CoreLoss
from vizlab.methods.perturbation.optimise import AreaMode, EarlyStopping, Objective, Schedule, optimise_masks
from vizlab.methods.perturbation.pyramid import PERTURBATIONS, PerturbationPyramid, gaussian_blur
from vizlab.methods.perturbation.scale import Scale, coarse_warning, original_scale, scale_for


def check_areas(areas: float | Sequence[float]) -> tuple[float, ...]:
    """One area or a non-empty list of areas, each strictly between 0 and 1."""
    values = [areas] if isinstance(areas, (int, float)) else list(areas)
    if not values:
        raise ConfigError("areas must list at least one target area, e.g. areas=[0.1].")
    for a in values:
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a < 1:
            raise ConfigError(f"Every area must be a fraction strictly between 0 and 1 (e.g. 0.1 = 10% of the "
                              f"input); got {a!r} in areas={values}.")
    return tuple(float(a) for a in values)


def check_choice(option: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{option} must be one of {', '.join(choices)}; got {value!r}.")


def check_number(option: str, value: Any, low: float | None = None, high: float | None = None,
                 integer: bool = False, low_open: bool = False, high_open: bool = False) -> None:
    """Raise ConfigError unless value is a (integer) number within the given bounds."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = int(value) == value
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            bounds.append(f"{'<' if high_open else '<='} {high}")
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{option} must be {kind}{' ' + ' and '.join(bounds) if bounds else ''}; got {value!r}.")


class PerturbationMethod(AttributionMethod):
    """Base of the extremal-perturbation family. Subclasses set `input_dims` (4 or 5), `area_mode`
    and the defaults; `make_core` adds STEP's term.

    Result (`return_info=True`): saliency = the mean of the per-area masks (the mask itself for one
    area; TorchRay's benchmark sums them, same ranking); raw = extras["masks"] = per-area masks
    (N, A, *S); extras["history"] = (N, A, 2, iterations) [ρ·model loss, regulariser] per
    iteration (the terms of the minimised loss; TorchRay's `hist` is their negation for images);
    extras["iterations"] = (N, A) iterations each mask ran; extras["area"] = (N, A) mean value of the
    returned masks; extras["full_area"] = (N, A) mean of the margin-padded full masks, which is what
    the area term drives towards a (the in-image area is larger when the margin is empty: TorchRay's
    convention, kept).
    """

    input_dims = 4
    area_mode: AreaMode = "global"
    fused_generator = True  # False: TorchRay's step-by-step mask generation (bit-identical arithmetic, slower)

    def __init__(self, model: nn.Module, *, areas: float | Sequence[float], variant: str, perturbation: str,
                 reward: str, max_iter: int, num_levels: int, max_blur: float | None, step: int | None,
                 sigma: float | None, pooling: str, jitter: bool, lr: float, momentum: float, dampening: float,
                 area_weight: float, area_growth: float, reward_weight: float, area_warmup: int, smooth: float, early_stop: bool, patience: int,
                 tol: float, strict_original: bool, progress: bool, batch_size: int | None) -> None:
        super().__init__(model)
        info = getattr(model, "info", None)
        if info is not None and isinstance(getattr(info, "is_video", None), bool):
            if info.is_video != (self.input_dims == 5):
                want = "clips: use method=ep2d, ep3d or step" if info.is_video else "images: use method=extremal"
                raise ConfigError(f"Method {self.name!r} does not fit model {getattr(info, 'name', '?')!r}, which "
                                  f"takes {want}.")
        self.areas = check_areas(areas)
        check_choice("variant", variant, VARIANTS)
        check_choice("perturbation", perturbation, PERTURBATIONS)
        check_choice("reward", reward, REWARDS)
        check_choice("pooling", pooling, POOLINGS)
        check_number("max_iter", max_iter, 1, integer=True)
        check_number("num_levels", num_levels, 2, integer=True)
        if max_blur is not None:
            check_number("max_blur", max_blur, 0, low_open=True)
        if step is not None:
            check_number("step", step, 1, integer=True)
        check_number("area_warmup", area_warmup, 0, integer=True)
        if sigma is not None:
            check_number("sigma", sigma, 0, low_open=True)
        check_number("lr", lr, 0, low_open=True)
        check_number("momentum", momentum, 0, 1, high_open=True)
        check_number("dampening", dampening, 0, 1)
        check_number("area_weight", area_weight, 0)
        check_number("area_growth", area_growth, 0, low_open=True)
        check_number("reward_weight", reward_weight, 0, low_open=True)
        check_number("smooth", smooth, 0)
        check_number("patience", patience, 1, integer=True)
        check_number("tol", tol, 0)
        if batch_size is not None:
            check_number("batch_size", batch_size, 1, integer=True)
        self.variant, self.perturbation, self.reward, self.pooling = variant, perturbation, reward, pooling
        self.num_levels = int(num_levels)
        self.max_blur = None if max_blur is None else float(max_blur)
        self.step = None if step is None else int(step)
        self.sigma = None if sigma is None else float(sigma)
        self.jitter, self.smooth, self.strict_original = bool(jitter), float(smooth), bool(strict_original)
        self.progress, self.batch_size = bool(progress), batch_size
        self.early = EarlyStopping(bool(early_stop), int(patience), float(tol))
        self.schedule = Schedule(int(max_iter), float(lr), float(momentum), float(dampening), float(area_weight),
                                 float(area_growth), float(reward_weight),
                                 area_warmup=0 if self.strict_original else min(int(area_warmup), int(max_iter) // 5))

    # --- hooks for subclasses -----------------------------------------------------------------
    def sizes(self, height: int, width: int) -> Scale:
        """Mask step, σ and max blur for (height, width) inputs: the options where set, else the size
        rule `scale.scale_for` of the shorter side (strict_original: the originals' fixed sizes,
        `scale.original_scale`). Warns (UserWarning) when σ is too coarse for the input."""
        video = self.input_dims == 5
        rule = original_scale(width, video) if self.strict_original else scale_for(min(height, width), video)
        scale = Scale(step=rule.step if self.step is None else self.step,
                      sigma=rule.sigma if self.sigma is None else self.sigma,
                      max_blur=rule.max_blur if self.max_blur is None else self.max_blur)
        message = coarse_warning(scale.sigma, height, width, video)
        if message is not None:
            warnings.warn(f"{self.name}: {message}", stacklevel=4)
        return scale

    def used_areas(self) -> tuple[float, ...]:
        return self.areas

    def make_core(self, frames: int, generator: MaskGenerator, areas: torch.Tensor,
                  device: torch.device) -> CoreLoss | None:
        return None

    def check_rank(self, x: torch.Tensor) -> None:
        if x.dim() != self.input_dims:
            if self.input_dims == 4:
                raise InputError(f"Method {self.name!r} explains images (N, C, H, W); got shape {tuple(x.shape)}. "
                                 "For clips (N, C, T, H, W) use method=ep2d, ep3d or step.")
            raise InputError(f"Method {self.name!r} explains clips (N, C, T, H, W); got shape {tuple(x.shape)}. "
                             "For images (N, C, H, W) use method=extremal.")

    # --- the method ---------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, target: Target = None, return_info: bool = False):
        if isinstance(x, torch.Tensor):
            self.check_rank(x)
        return super().__call__(x, target, return_info)

    def explain(self, x: torch.Tensor, target: Target) -> Explanation:
        with torch.no_grad():
            logits = logits_of(self.model(x))
        t = resolve_target(target, logits)
        n = x.shape[0]
        chunk = self.batch_size or n
        parts = [self._explain_chunk(x[i:i + chunk], t[i:i + chunk]) for i in range(0, n, chunk)]
        masks = torch.cat([p[0] for p in parts])              # (N, A, *S)
        iters = max(p[1].shape[-1] for p in parts)
        history = torch.cat([torch.nn.functional.pad(p[1], (0, iters - p[1].shape[-1]), value=float("nan"))
                             for p in parts])                  # (N, A, 2, iters)
        iterations = torch.cat([p[2] for p in parts])         # (N, A)
        saliency = masks.mean(dim=1)
        extras = {"masks": masks, "history": history, "iterations": iterations,
                  "area": masks.flatten(2).mean(dim=2), "full_area": torch.cat([p[3] for p in parts]),
                  "params": torch.cat([p[4] for p in parts])}
        return Explanation(saliency, masks, t, logits, extras)

    # --- what the explain loop records ---------------------------------------------------------
    def area_labels(self, info: Explanation) -> list[str]:
        return [f"area {a:g}" for a in self.used_areas()][: info.extras["masks"].shape[1]]

    def sample_details(self, info: Explanation, index: int) -> dict[str, Any]:
        """Per area: iterations run, mean of the returned mask, mean of the full mask, and the last
        model term and regulariser of the optimisation."""
        history = info.extras["history"][index]                      # (A, 2, iterations)
        last = (info.extras["iterations"][index] - 1).clamp_min(0)   # (A,)
        final = history.gather(2, last.view(-1, 1, 1).expand(-1, 2, 1).to(history.device))[..., 0]
        return {"areas": list(self.used_areas()), "iterations": info.extras["iterations"][index].tolist(),
                "mask_area": info.extras["area"][index].tolist(), "full_area": info.extras["full_area"][index].tolist(),
                "final_model_term": final[:, 0].tolist(), "final_regulariser": final[:, 1].tolist()}

    def sample_figures(self, info: Explanation, index: int, image: torch.Tensor) -> dict[str, Any]:
        """"history": the model term and the regulariser per iteration, one line per area."""
        from vizlab.viz.curves import draw_history

        iterations = int(info.extras["iterations"][index].max())
        history = info.extras["history"][index, :, :, :iterations]
        return {"history": draw_history(history, self.area_labels(info), title=f"{self.name} optimisation")}

    def curves(self, info: Explanation) -> dict[str, torch.Tensor]:
        """model_term / regulariser per area (areas named as in area_labels), (N, iterations)."""
        out = {}
        for a, label in enumerate(self.area_labels(info)):
            suffix = label.replace(" ", "_")
            out[f"model_term_{suffix}"] = info.extras["history"][:, a, 0]
            out[f"regulariser_{suffix}"] = info.extras["history"][:, a, 1]
        return out

    def objective(self, x: torch.Tensor, target: torch.Tensor) -> Objective:
        """The energy this method minimises on x (N, C, *S) for targets (N,): pyramid, generator,
        schedule, rewards and regularisers, for every (sample, area) row (see optimise.Objective)."""
        n = x.shape[0]
        video = x.dim() == 5
        frames = x.shape[2] if video else 1
        height, width = x.shape[-2:]
        images = x.transpose(1, 2).reshape(n * frames, x.shape[1], height, width) if video else x
        areas = self.used_areas()
        scale = self.sizes(height, width)
        pyramid = PerturbationPyramid(images.detach(), self.num_levels, self.perturbation, scale.max_blur)
        generator = MaskGenerator((height, width), scale.step, scale.sigma,
                                  pooling=self.pooling, fused=self.fused_generator).to(x.device, x.dtype)
        core = self.make_core(frames, generator, torch.tensor(areas), x.device)
        return Objective(self.model, pyramid, generator, target, areas, frames, self.schedule, variant=self.variant,
                         reward=self.reward, area_mode=self.area_mode, core=core, jitter=self.jitter,
                         strict_original=self.strict_original, area_on=getattr(self, "area_on", "full"))

    def _explain_chunk(self, x: torch.Tensor, target: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        video = x.dim() == 5
        frames = x.shape[2] if video else 1
        height, width = x.shape[-2:]
        objective = self.objective(x, target)
        a = objective.num_areas
        result = optimise_masks(objective, early=self.early, stale_mask=self.strict_original, progress=self.progress,
                                desc=f"{self.name} {n}×{a} masks")
        masks = result.masks  # (N·A, F, H, W)
        if self.smooth > 0:
            flat = masks.reshape(-1, 1, height, width)
            masks = gaussian_blur(flat, self.smooth * min(height, width)).view_as(masks)
        shape = (n, a, frames, height, width) if video else (n, a, height, width)
        params = result.params.view(n, a, frames, *result.params.shape[-2:])
        return (masks.reshape(shape).detach(), result.history.view(n, a, 2, -1).detach(),
                result.iterations.view(n, a), result.full_area.view(n, a).detach(), params.detach())

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(areas={list(self.areas)}, variant={self.variant!r}, "
                f"max_iter={self.schedule.max_iter}, reward={self.reward!r}, perturbation={self.perturbation!r})")
