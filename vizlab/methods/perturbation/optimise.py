"""The shared optimisation loop of image EP, 2D-EP, 3D-EP and STEP, batched over samples × areas.

One *row* is one (sample, area) pair: row r = n·A + a. Every iteration generates the masks of all
active rows, perturbs their inputs through the pyramid, runs **one** forward/backward of the
model on all of them, and takes an SGD step (momentum with dampening, as torch.optim.SGD, then a
clamp to [0, 1]). Rows are independent (the loss is a sum over rows and the model is in eval
mode), so a batched run equals per-sample runs up to float rounding.

Loss of a row at iteration t (minimised):
    ρ · L_model(perturbed input)  +  λ_t · R_area(full mask)  [+ λ_core,t · R_core(full mask)]
with λ_t = λ_0 · growth^t and λ_core,t = λ_core from iteration `core_start` on (0 before).

Early stopping (off by default) is **per row**: a row stops when its loss has not decreased by
more than tol·max(1, |best|) for `patience` iterations (counting restarts when the core term
switches on); stopped rows leave the batch, so later iterations cost less. `iterations` reports
the iterations each row ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vizlab.methods.base import logits_of
from vizlab.methods.perturbation.mask_generator import MaskGenerator
from vizlab.methods.perturbation.objectives import (
    CoreLoss,
    Reward,
    Variant,
    area_loss,
    reference_zeros,
    reward_loss,
)
from vizlab.methods.perturbation.pyramid import PerturbationPyramid
from vizlab.progress import progress_bar

AreaMode = Literal["global", "per_frame"]
AreaDomain = Literal["image", "full"]  # what an area a is a share of: the image or the margin-padded full mask


@dataclass(frozen=True)
class Schedule:
    """Optimiser and weight schedule. Defaults are TorchRay's image EP."""

    max_iter: int = 800
    lr: float = 0.01
    momentum: float = 0.9
    dampening: float = 0.9
    area_weight: float = 300.0     # λ_0
    area_growth: float = 1.0035    # λ_{t+1} = λ_t · growth
    reward_weight: float = 1.0     # ρ
    core_weight: float = 0.0       # λ_core (STEP: 300)
    core_start: int = 101          # first (0-based) iteration with the core term (seed: on after t = 100)
    area_warmup: int = 0           # iterations with the relaxed (mean-only) area term before the sorted one


@dataclass(frozen=True)
class EarlyStopping:
    enabled: bool = False
    patience: int = 50
    tol: float = 1e-4


@dataclass
class OptimisationResult:
    """masks: (R, F, H, W) image masks; history: (R, 2, iters) per-iteration [ρ·L_model, regulariser];
    iterations: (R,) iterations each row ran; full_area: (R,) mean of the margin-padded full masks
    (what the area term constrains); params: (R·F, 1, h_in, w_in) the final mask parameters.
    Rows r = n·A + a."""

    masks: torch.Tensor
    history: torch.Tensor
    iterations: torch.Tensor
    full_area: torch.Tensor
    params: torch.Tensor | None = None


class Objective:
    """The energy every (sample, area) row minimises, evaluated for given mask parameters.

    Row r = n·A + a of N = target.numel() samples × A = len(areas); F = `frames` frames per row.
    copies > 1 (restarts) repeats every row: row r = (k·N + n)·A + a for copy k < copies, all copies
    of a sample sharing its pyramid (no extra memory for the perturbed inputs).
    `terms(params, rows, area_w, core_w, flip)` → (mask, full, ρ·L_model (K,), regulariser (K,)) for
    the parameters (K·F, 1, h_in, w_in) of rows `rows` (None: all), with the area term weighted by
    area_w and STEP's core term by core_w; flip mirrors the perturbed input (jitter).
    `weights(t)` = (λ_t, λ_core,t) exactly as the loop accumulates them (λ_0·growth^t by repeated
    multiplication; λ_core from `core_start` on). `final(params)` = the terms at the last iteration's
    weights, averaged over both orientations when the method jitters.
    """

    def __init__(self, model: nn.Module, pyramid: PerturbationPyramid, generator: MaskGenerator,
                 target: torch.Tensor, areas: Sequence[float], frames: int, schedule: Schedule,
                 variant: Variant = "preserve", reward: Reward = "simple", area_mode: AreaMode = "global",
                 core: CoreLoss | None = None, jitter: bool = False, strict_original: bool = False,
                 area_on: AreaDomain = "full", copies: int = 1) -> None:
        self.area_on = area_on
        self.model, self.pyramid, self.generator, self.frames, self.schedule = model, pyramid, generator, frames, schedule
        self.variant, self.reward, self.area_mode, self.core = variant, reward, area_mode, core
        self.jitter, self.strict_original = jitter, strict_original
        device = pyramid.pyramid.device
        self.device, self.dtype = device, pyramid.pyramid.dtype
        self.num_areas, self.copies = len(areas), int(copies)
        self.rows = self.copies * target.shape[0] * self.num_areas
        out_h, out_w = generator.shape_out
        self.full_size = out_h * out_w
        image_size = generator.shape[0] * generator.shape[1]
        row_ids = torch.arange(self.rows, device=device)
        self.image_of_row = (row_ids // self.num_areas) % target.shape[0]
        self.area_of_row = row_ids % self.num_areas
        self.row_target = target.to(device)[self.image_of_row]
        self.frame_ids = torch.arange(frames, device=device)
        span = frames if area_mode == "global" else 1  # frames that share one reference
        if area_on == "full":  # TorchRay / the seed: a is a share of the margin-padded full mask
            counts = [reference_zeros(span * self.full_size, a) for a in areas]
        else:  # a is a share of the image: round(a·H·W) ones (per frame span), the rest of the full mask 0
            counts = [span * self.full_size - round(span * image_size * a) for a in areas]
        if area_mode == "global":
            zeros = torch.tensor(counts, device=device)
            self.zeros = zeros[self.area_of_row]
        else:
            zeros = torch.tensor(counts, device=device)
            self.zeros = zeros[self.area_of_row][:, None].expand(self.rows, frames)

    def weights(self, t: int) -> tuple[float, float]:
        area_w = float(self.schedule.area_weight)
        for _ in range(t):
            area_w *= self.schedule.area_growth
        core_w = float(self.schedule.core_weight) if self.core is not None and t >= self.schedule.core_start else 0.0
        return area_w, core_w

    def terms(self, params: torch.Tensor, rows: torch.Tensor | None, area_w: float, core_w: float,
              flip: bool = False, relaxed: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = torch.arange(self.rows, device=self.device) if rows is None else rows
        k, frames = rows.numel(), self.frames
        out_h, out_w = self.generator.shape_out
        mask, full = self.generator.generate(params)
        src = (self.image_of_row[rows][:, None] * frames + self.frame_ids).flatten()
        if self.variant == "preserve":
            perturbed = self.pyramid.apply(mask, src)
        elif self.variant == "delete":
            perturbed = self.pyramid.apply(1 - mask, src)
        else:
            perturbed = torch.cat([self.pyramid.apply(mask, src), self.pyramid.apply(1 - mask, src)])
        if frames > 1:
            perturbed = perturbed.view(-1, frames, *perturbed.shape[1:]).transpose(1, 2)
        if flip:
            perturbed = perturbed.flip(-1)
        logits = logits_of(self.model(perturbed))
        model_term = self.schedule.reward_weight * reward_loss(logits, self.row_target[rows], self.variant,
                                                               self.reward, self.strict_original)
        if relaxed:
            flat = full.reshape(k, frames, self.full_size)
            size = self.full_size * (frames if self.zeros.dim() == 1 else 1)
            share = 1 - self.zeros[rows].to(full.dtype) / size
            mean = flat.mean(dim=(1, 2)) if self.zeros.dim() == 1 else flat.mean(dim=2)
            regul = area_w * ((mean - share) ** 2).reshape(k, -1).mean(dim=1)
        else:
            regul = area_w * area_loss(full.reshape(k, frames, self.full_size), self.zeros[rows])
        if self.core is not None and core_w != 0:
            regul = regul + core_w * self.core(full.reshape(k, 1, frames, out_h, out_w), self.area_of_row[rows])
        return mask, full, model_term, regul

    @torch.no_grad()
    def final(self, params: torch.Tensor, iteration: int | None = None) -> torch.Tensor:
        """(R, 2) [ρ·L_model, regulariser] of all rows at the weights of `iteration` (default: the
        last, max_iter − 1); the model term is the mean over both orientations when jittering."""
        t = self.schedule.max_iter - 1 if iteration is None else iteration
        area_w, core_w = self.weights(t)
        _, _, model_term, regul = self.terms(params, None, area_w, core_w, flip=False)
        if self.jitter:
            model_term = (model_term + self.terms(params, None, area_w, core_w, flip=True)[2]) / 2
        return torch.stack([model_term, regul], dim=1)


def optimise_masks(objective: Objective, early: EarlyStopping = EarlyStopping(), stale_mask: bool = False,
                   progress: bool = False, desc: str = "perturbation", init: torch.Tensor | None = None,
                   ) -> OptimisationResult:
    """Optimise the N·A masks of `objective` (F = objective.frames frames each) by SGD.

    Model input per row: (C, H, W) when frames == 1, else (C, F, H, W) (a clip).
    jitter (objective.jitter): flip the perturbed batch horizontally on even iterations (TorchRay).
    stale_mask: return the masks of the last forward pass (before the final step), as the
    originals do; otherwise the masks of the final parameters.
    init: starting parameters (R·F, 1, h_in, w_in) in [0, 1]; default all ones (the originals').
    """
    device, dtype = objective.device, objective.dtype
    generator, schedule, frames = objective.generator, objective.schedule, objective.frames
    rows = objective.rows
    h, w = generator.shape
    row_ids = torch.arange(rows, device=device)
    frame_ids = objective.frame_ids

    if init is None:
        params = torch.ones(rows * frames, 1, *generator.shape_in, device=device, dtype=dtype)
    else:
        params = init.detach().to(device=device, dtype=dtype).clamp(0, 1).clone()
    momentum_buf = torch.zeros_like(params)
    history = torch.full((rows, 2, schedule.max_iter), float("nan"), device=device, dtype=dtype)
    iterations = torch.full((rows,), schedule.max_iter, device=device, dtype=torch.long)
    last_masks = torch.empty(rows, frames, h, w, device=device, dtype=dtype) if stale_mask else None
    last_full_area = torch.empty(rows, device=device, dtype=dtype)
    best = torch.full((rows,), float("inf"), device=device, dtype=dtype)
    since = torch.zeros(rows, device=device, dtype=torch.long)
    active = row_ids
    area_w, core_w = objective.weights(0)
    last_t = -1

    bar = progress_bar(range(schedule.max_iter), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    for t in bar:
        last_t = t
        k = active.numel()
        everyone = k == rows
        pidx = None if everyone else (active[:, None] * frames + frame_ids).flatten()
        p = (params if everyone else params[pidx]).detach().requires_grad_(True)
        with torch.enable_grad():
            mask, full, model_term, regul = objective.terms(p, active, area_w, core_w,
                                                            flip=objective.jitter and t % 2 == 0,
                                                            relaxed=t < schedule.area_warmup)
            total = model_term + regul
            (grad,) = torch.autograd.grad(total.sum(), p)
        with torch.no_grad():
            _sgd_step(params, momentum_buf, grad, pidx, t, schedule)
            history[active, 0, t] = model_term.detach()
            history[active, 1, t] = regul.detach()
            if last_masks is not None:
                last_masks[active] = mask.detach().view(k, frames, h, w)
                last_full_area[active] = full.detach().view(k, -1).mean(dim=1)
        area_w *= schedule.area_growth
        switched = objective.core is not None and t + 1 == schedule.core_start
        if switched:
            core_w = float(schedule.core_weight)
        if progress and (t % 10 == 0 or t == schedule.max_iter - 1):
            bar.set_postfix(loss=f"{float(total.detach().mean()):.4g}", rows=k)
        if early.enabled:
            active = _early_stop(total.detach(), active, best, since, iterations, t, early)
            if switched:
                best.fill_(float("inf"))
                since.zero_()
            if active.numel() == 0:
                break
    bar.close()

    with torch.no_grad():
        if last_masks is None:
            final, final_full = generator.generate(params)
            masks, full_area = final.view(rows, frames, h, w), final_full.view(rows, -1).mean(dim=1)
        else:
            masks, full_area = last_masks, last_full_area
    return OptimisationResult(masks=masks, history=history[:, :, : last_t + 1], iterations=iterations,
                              full_area=full_area, params=params)


def _sgd_step(params: torch.Tensor, buf: torch.Tensor, grad: torch.Tensor, pidx: torch.Tensor | None, t: int,
              schedule: Schedule) -> None:
    """torch.optim.SGD(momentum, dampening) on the rows `pidx` (None: all), then clamp to [0, 1].

    Same arithmetic as PyTorch: the first step sets the buffer to the gradient (no dampening).
    """
    if pidx is None:
        if t == 0:
            buf.copy_(grad)
        else:
            buf.mul_(schedule.momentum).add_(grad, alpha=1 - schedule.dampening)
        params.add_(buf, alpha=-schedule.lr).clamp_(0, 1)
        return
    b = buf[pidx]
    if t == 0:
        b.copy_(grad)
    else:
        b.mul_(schedule.momentum).add_(grad, alpha=1 - schedule.dampening)
    buf[pidx] = b
    params[pidx] = params[pidx].add_(b, alpha=-schedule.lr).clamp_(0, 1)


def _early_stop(loss: torch.Tensor, active: torch.Tensor, best: torch.Tensor, since: torch.Tensor,
                iterations: torch.Tensor, t: int, early: EarlyStopping) -> torch.Tensor:
    """Update the patience counters of the active rows; return the rows that keep going."""
    prev = best[active]
    improved = loss < prev - early.tol * prev.abs().clamp_min(1)
    improved |= torch.isinf(prev)
    best[active] = torch.where(improved, loss, prev)
    since[active] = torch.where(improved, 0, since[active] + 1)
    stop = since[active] >= early.patience
    if stop.any():
        iterations[active[stop]] = t + 1
        return active[~stop]
    return active
