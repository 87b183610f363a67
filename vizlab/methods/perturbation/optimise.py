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
from tqdm import tqdm

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

AreaMode = Literal["global", "per_frame"]


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


@dataclass(frozen=True)
class EarlyStopping:
    enabled: bool = False
    patience: int = 50
    tol: float = 1e-4


@dataclass
class OptimisationResult:
    """masks: (R, F, H, W) image masks; history: (R, 2, iters) per-iteration [ρ·L_model, regulariser];
    iterations: (R,) iterations each row ran; full_area: (R,) mean of the margin-padded full masks
    (what the area term constrains). Rows r = n·A + a."""

    masks: torch.Tensor
    history: torch.Tensor
    iterations: torch.Tensor
    full_area: torch.Tensor


def optimise_masks(model: nn.Module, pyramid: PerturbationPyramid, generator: MaskGenerator, target: torch.Tensor,
                   areas: Sequence[float], frames: int, schedule: Schedule, variant: Variant = "preserve",
                   reward: Reward = "simple", area_mode: AreaMode = "global", core: CoreLoss | None = None,
                   jitter: bool = False, early: EarlyStopping = EarlyStopping(), stale_mask: bool = False,
                   strict_original: bool = False, progress: bool = False, desc: str = "perturbation",
                   ) -> OptimisationResult:
    """Optimise N·A masks (N = target.numel(), A = len(areas)) of F = `frames` frames each.

    pyramid: built on the N·F input frames (frame f of sample n is pyramid row n·F + f).
    Model input per row: (C, H, W) when frames == 1, else (C, F, H, W) (a clip).
    jitter: flip the perturbed batch horizontally on even iterations (TorchRay).
    stale_mask: return the masks of the last forward pass (before the final step), as the
    originals do; otherwise the masks of the final parameters.
    """
    device = pyramid.pyramid.device
    dtype = pyramid.pyramid.dtype
    n, num_areas = target.shape[0], len(areas)
    rows = n * num_areas
    h, w = generator.shape
    out_h, out_w = generator.shape_out
    full_size = out_h * out_w
    row_ids = torch.arange(rows, device=device)
    image_of_row, area_of_row = row_ids // num_areas, row_ids % num_areas
    row_target = target.to(device)[image_of_row]
    frame_ids = torch.arange(frames, device=device)
    if area_mode == "global":
        zeros = torch.tensor([reference_zeros(frames * full_size, a) for a in areas], device=device)[area_of_row]
    else:
        zeros = torch.tensor([reference_zeros(full_size, a) for a in areas], device=device)[area_of_row]
        zeros = zeros[:, None].expand(rows, frames)

    params = torch.ones(rows * frames, 1, *generator.shape_in, device=device, dtype=dtype)
    momentum_buf = torch.zeros_like(params)
    history = torch.full((rows, 2, schedule.max_iter), float("nan"), device=device, dtype=dtype)
    iterations = torch.full((rows,), schedule.max_iter, device=device, dtype=torch.long)
    last_masks = torch.empty(rows, frames, h, w, device=device, dtype=dtype) if stale_mask else None
    last_full_area = torch.empty(rows, device=device, dtype=dtype)
    best = torch.full((rows,), float("inf"), device=device, dtype=dtype)
    since = torch.zeros(rows, device=device, dtype=torch.long)
    active = row_ids
    area_w = float(schedule.area_weight)
    core_w = float(schedule.core_weight) if schedule.core_start <= 0 else 0.0
    last_t = -1

    bar = tqdm(range(schedule.max_iter), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    for t in bar:
        last_t = t
        k = active.numel()
        everyone = k == rows
        pidx = None if everyone else (active[:, None] * frames + frame_ids).flatten()
        p = (params if everyone else params[pidx]).detach().requires_grad_(True)
        with torch.enable_grad():
            mask, full = generator.generate(p)
            src = (image_of_row[active][:, None] * frames + frame_ids).flatten()
            if variant == "preserve":
                perturbed = pyramid.apply(mask, src)
            elif variant == "delete":
                perturbed = pyramid.apply(1 - mask, src)
            else:
                perturbed = torch.cat([pyramid.apply(mask, src), pyramid.apply(1 - mask, src)])
            if frames > 1:
                perturbed = perturbed.view(-1, frames, *perturbed.shape[1:]).transpose(1, 2)
            if jitter and t % 2 == 0:
                perturbed = perturbed.flip(-1)
            logits = logits_of(model(perturbed))
            model_term = schedule.reward_weight * reward_loss(logits, row_target[active], variant, reward,
                                                              strict_original)
            full_rows = full.reshape(k, frames, full_size)
            regul = area_w * area_loss(full_rows, zeros[active])
            if core is not None and core_w != 0:
                regul = regul + core_w * core(full.reshape(k, 1, frames, out_h, out_w), area_of_row[active])
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
        switched = core is not None and t + 1 == schedule.core_start
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
                              full_area=full_area)


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
