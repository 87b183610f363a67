"""`PerturbationMethod`: what image EP and the video methods share — option checks, the clean
forward for targets, pyramid and generator set-up, chunking, and the result object."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from vizlab.errors import ConfigError, InputError
from vizlab.methods.base import AttributionMethod, Explanation, Target, logits_of, resolve_target
from vizlab.methods.perturbation.mask_generator import MaskGenerator
from vizlab.methods.perturbation.objectives import CoreLoss
from vizlab.methods.perturbation.optimise import AreaMode, EarlyStopping, Objective, Schedule, optimise_masks
from vizlab.methods.perturbation.options import ExtremalOptions
from vizlab.methods.perturbation.pyramid import PerturbationPyramid, gaussian_blur
from vizlab.methods.perturbation.restarts import keep_best, restart_starts
from vizlab.methods.perturbation.scale import Scale, coarse_warning, original_scale, scale_for


def warmup_iterations(area_warmup: int | None, max_iter: int, strict_original: bool = False) -> int:
    """Iterations of the relaxed (mean-only) area term: `area_warmup` when set (at most max_iter),
    None = the first half of the run (max_iter // 2); 0 with strict_original (the originals).

    Why half: the relaxed term shrinks the mask towards its area only geometrically (its gradient is
    proportional to mean − a), so on the default schedules it needs about half the run to get there
    (2D-EP, 8 × 48² clips: the full mask's mean is 0.43 after 60 iterations, 0.11 after 500). The
    sorted term ranks the mask values when it switches on; started early, it ranks a half-size mask
    whose model term is saturated, and keeps that ranking (docs/extremal.md, "The second defect").
    """
    if strict_original:
        return 0
    return max_iter // 2 if area_warmup is None else min(int(area_warmup), max_iter)


class PerturbationMethod(AttributionMethod):
    """Base of the extremal-perturbation family. Subclasses set `input_dims` (4 or 5), `area_mode`
    and the defaults; `make_core` adds STEP's term.

    Result (`return_info=True`): saliency = the mean of the per-area masks (the mask itself for one
    area; TorchRay's benchmark sums them, same ranking); raw = extras["masks"] = per-area masks
    (N, A, *S); extras["history"] = (N, A, 2, iterations) [ρ·model loss, regulariser] per
    iteration (the terms of the minimised loss; TorchRay's `hist` is their negation for images);
    extras["iterations"] = (N, A) iterations each mask ran; extras["restart"] = (N, A) the start
    each returned mask came from (0 = all ones; see `restarts`); extras["area"] = (N, A) mean value of the
    returned masks; extras["full_area"] = (N, A) mean of the margin-padded full masks, which is what
    the area term drives towards a (the in-image area is larger when the margin is empty: TorchRay's
    convention, kept).
    """

    input_dims = 4
    area_mode: AreaMode = "global"
    options_type: ClassVar[type[ExtremalOptions]] = ExtremalOptions  # the options and their defaults
    fused_generator = True  # False: TorchRay's step-by-step mask generation (bit-identical arithmetic, slower)

    def __init__(self, model: nn.Module, options: ExtremalOptions | None = None, /, **overrides: Any) -> None:
        """`options`: an instance of the class's `options_type` (None: its defaults); keyword
        `overrides` replace single fields (`ExtremalPerturbation(model, max_iter=100)`)."""
        super().__init__(model)
        info = getattr(model, "info", None)
        if info is not None and isinstance(getattr(info, "is_video", None), bool):
            if info.is_video != (self.input_dims == 5):
                want = "clips: use method=ep2d, ep3d or step" if info.is_video else "images: use method=extremal"
                raise ConfigError(f"Method {self.name!r} does not fit model {getattr(info, 'name', '?')!r}, which "
                                  f"takes {want}.")
        self.options = o = self.options_type.make(options, **overrides)
        self.areas = o.areas
        self.variant, self.perturbation, self.reward, self.pooling = o.variant, o.perturbation, o.reward, o.pooling
        self.num_levels = int(o.num_levels)
        self.max_blur = None if o.max_blur is None else float(o.max_blur)
        self.step = None if o.step is None else int(o.step)
        self.sigma = None if o.sigma is None else float(o.sigma)
        self.jitter, self.smooth, self.strict_original = bool(o.jitter), float(o.smooth), bool(o.strict_original)
        self.progress, self.batch_size = bool(o.progress), o.batch_size
        self.early = EarlyStopping(bool(o.early_stop), int(o.patience), float(o.tol))
        self.schedule = Schedule(int(o.max_iter), float(o.lr), float(o.momentum), float(o.dampening),
                                 float(o.area_weight), float(o.area_growth), float(o.reward_weight),
                                 area_warmup=warmup_iterations(o.area_warmup, int(o.max_iter), self.strict_original))

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
                  "params": torch.cat([p[4] for p in parts]), "restart": torch.cat([p[5] for p in parts])}
        return Explanation(saliency, masks, t, logits, extras)

    # --- what the explain loop records ---------------------------------------------------------
    def area_labels(self, info: Explanation) -> list[str]:
        return [f"area {a:g}" for a in self.used_areas()][: info.extras["masks"].shape[1]]

    def sample_details(self, info: Explanation, index: int) -> dict[str, Any]:
        """Per area: iterations run, mean of the returned mask, mean of the full mask, and the last
        model term and regulariser of the optimisation; with restarts, the start each mask came from."""
        history = info.extras["history"][index]                      # (A, 2, iterations)
        last = (info.extras["iterations"][index] - 1).clamp_min(0)   # (A,)
        final = history.gather(2, last.view(-1, 1, 1).expand(-1, 2, 1).to(history.device))[..., 0]
        details = {"areas": list(self.used_areas()), "iterations": info.extras["iterations"][index].tolist(),
                   "mask_area": info.extras["area"][index].tolist(),
                   "full_area": info.extras["full_area"][index].tolist(),
                   "final_model_term": final[:, 0].tolist(), "final_regulariser": final[:, 1].tolist()}
        if self.options.restarts > 1:
            details["restart"] = info.extras["restart"][index].tolist()
        return details

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

    def objective(self, x: torch.Tensor, target: torch.Tensor, copies: int = 1) -> Objective:
        """The energy this method minimises on x (N, C, *S) for targets (N,): pyramid, generator,
        schedule, rewards and regularisers, for every (sample, area) row (see optimise.Objective);
        `copies` repeats the rows for restarts."""
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
                         strict_original=self.strict_original, area_on=getattr(self, "area_on", "full"),
                         copies=copies)

    def _explain_chunk(self, x: torch.Tensor, target: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        video = x.dim() == 5
        frames = x.shape[2] if video else 1
        height, width = x.shape[-2:]
        restarts = self.options.restarts
        objective = self.objective(x, target, copies=restarts)
        a = objective.num_areas
        starts = f" × {restarts} starts" if restarts > 1 else ""
        result = optimise_masks(objective, early=self.early, stale_mask=self.strict_original, progress=self.progress,
                                desc=f"{self.name} {n}×{a} masks{starts}",
                                init=restart_starts(objective, self.options.restart_noise) if restarts > 1 else None)
        chosen = torch.zeros(n * a, dtype=torch.long, device=x.device)
        if restarts > 1:
            result, chosen = keep_best(objective, result)
        masks = result.masks  # (N·A, F, H, W)
        if self.smooth > 0:
            flat = masks.reshape(-1, 1, height, width)
            masks = gaussian_blur(flat, self.smooth * min(height, width)).view_as(masks)
        shape = (n, a, frames, height, width) if video else (n, a, height, width)
        params = result.params.view(n, a, frames, *result.params.shape[-2:])
        return (masks.reshape(shape).detach(), result.history.view(n, a, 2, -1).detach(),
                result.iterations.view(n, a), result.full_area.view(n, a).detach(), params.detach(),
                chosen.view(n, a))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(areas={list(self.areas)}, variant={self.variant!r}, "
                f"max_iter={self.schedule.max_iter}, reward={self.reward!r}, perturbation={self.perturbation!r})")
