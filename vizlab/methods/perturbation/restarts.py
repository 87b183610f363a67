"""Restarts: optimise every mask from several starts and keep the one with the lowest objective.

The extremal objective is not convex: on 16 synthetic-shapes images (64², 300 iterations) one run
from the originals' all-ones start ends within 5 % of the oracle mask's objective on 7 of 16, each
of four differently started runs on 5–7 of 16, but the best of the four on 12 of 16 (best of 8: 14);
started at the oracle's parameters the optimiser ends lower still, so the gap is local minima, not
the objective (docs/extremal.md, "Restarts"). Copy 0 starts at all ones (the originals' start);
copy k > 0 at 1 − noise · U(0, 1), from a generator seeded with `RESTART_SEED`, so a run repeats.
"""

from __future__ import annotations

import torch

from vizlab.methods.perturbation.optimise import Objective, OptimisationResult

RESTART_SEED = 0


def restart_starts(objective: Objective, noise: float) -> torch.Tensor:
    """Start parameters (R·F, 1, h_in, w_in) for `objective`'s rows (R = copies · N · A): copy 0 all
    ones, the other copies all ones minus `noise` · U(0, 1)."""
    per_copy = objective.rows // objective.copies * objective.frames
    shape = (objective.rows * objective.frames, 1, *objective.generator.shape_in)
    start = torch.ones(shape, device=objective.device, dtype=objective.dtype)
    rng = torch.Generator().manual_seed(RESTART_SEED)
    draw = torch.rand((shape[0] - per_copy, *shape[1:]), generator=rng, dtype=torch.float32)
    start[per_copy:] -= noise * draw.to(objective.device, objective.dtype)
    return start


def keep_best(objective: Objective, result: OptimisationResult) -> tuple[OptimisationResult, torch.Tensor]:
    """The rows of `result` (all copies) reduced to each mask's best copy by the final objective
    (`Objective.final`, the one the oracle check uses; ties keep the earlier copy).

    Returns (result over N·A rows, chosen copy (N·A,)).
    """
    k, frames = objective.copies, objective.frames
    rows = objective.rows // k
    totals = objective.final(result.params).sum(-1).view(k, rows)
    best = totals.argmin(dim=0)
    pick = best * rows + torch.arange(rows, device=best.device)            # row index into the K·N·A rows
    params = result.params.view(k * rows, frames, *result.params.shape[1:])[pick].flatten(0, 1)
    chosen = OptimisationResult(masks=result.masks[pick], history=result.history[pick],
                                iterations=result.iterations[pick], full_area=result.full_area[pick],
                                params=params)
    return chosen, best


__all__ = ["RESTART_SEED", "keep_best", "restart_starts"]
