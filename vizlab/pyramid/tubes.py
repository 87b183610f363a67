"""Saliency tubes: for every node with children, its children's activation maps summed.

A child's activation map is what its parent reads from it: the parent's input channel x(j), times
the child's share of that channel when it is a sum (strict_original: the previous conv's raw output,
the original's A[−d]). With `weighted` (default unless strict_original) each child's map is weighted
by its contribution per unit of activation, k̄[i, x(j)] (times its share), so the tube is the map of
the selected contributions: its spatio-temporal mean is Σ_j p_ij; otherwise every child counts 1
(the original's plain sum). Low-resolution tubes (at the parent's
input resolution) are computed batched per parent layer; `finish` upsamples one or many to the clip
(trilinear, bilinear for images), rectifies them (not in strict mode, whose sum may be signed) and
min-max scales each to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vizlab.methods.base import minmax, upsample
from vizlab.pyramid.backstep import Context, Level
from vizlab.pyramid.plan import Plan


def low_res_tubes(plan: Plan, ctx: Context, maps: dict, levels: list[Level], weighted: bool) -> list[list[torch.Tensor
                                                                                                         | None]]:
    """tubes[d][m]: the (*S') tube of node m of level d (None for nodes without children). d < len(levels) − 1."""
    out: list[list[torch.Tensor | None]] = []
    for d in range(len(levels) - 1):
        parents, children = levels[d], levels[d + 1]
        tubes: list[torch.Tensor | None] = [None] * len(parents)
        for op in parents.op.unique().tolist():
            cand = plan.candidates.get((d, op))
            if cand is None:
                continue
            rows = (parents.op == op).nonzero()[:, 0]
            local = torch.full((len(parents),), -1, dtype=torch.long, device=rows.device)
            local[rows] = torch.arange(rows.numel(), device=rows.device)
            kids = (local[children.parent] >= 0).nonzero()[:, 0]
            if kids.numel() == 0:
                continue
            x = maps[cand.map_slot]                                      # (N, C_in, *S')
            parent = local[children.parent[kids]]
            inputs = cand.x_index[children.entry[kids]]
            if weighted:
                weight = kernel_weight(ctx.kbar(op), parents.kernel[rows][parent], inputs,
                                       plan.graph.ops[op].groups, inflate=plan.strict)
            else:
                weight = torch.ones_like(children.relative[kids])
            if not plan.strict:
                weight = weight * ctx.shares(cand)[children.clip[kids], children.entry[kids]]
            # one batched matmul: parents padded per clip, (N, R_max, C_in) @ (N, C_in, S')
            clips = parents.clip[rows]
            counts = torch.bincount(clips, minlength=x.shape[0])
            position = torch.arange(rows.numel(), device=rows.device) - (counts.cumsum(0) - counts)[clips]
            omega = x.new_zeros(x.shape[0], int(counts.max()), x.shape[1], dtype=torch.float32)
            omega.index_put_((clips[parent], position[parent], inputs), weight.float(),
                             accumulate=True)
            low = torch.bmm(omega, x.float().flatten(2))[clips, position].view(rows.numel(), *x.shape[2:])
            has_children = torch.zeros(rows.numel(), dtype=torch.bool, device=rows.device)
            has_children[parent] = True
            for i, (row, keep) in enumerate(zip(rows.tolist(), has_children.tolist(), strict=True)):
                if keep:
                    tubes[row] = low[i]
        out.append(tubes)
    return out


def kernel_weight(kbar: torch.Tensor, kernels: torch.Tensor, inputs: torch.Tensor, groups: int,
                  inflate: bool) -> torch.Tensor:
    """k̄[kernel, input] for (kernel, input channel) pairs of a layer with `groups` groups: the weight of
    the input within the kernel's group (`inflate`: the original's repeated weights, input // groups)."""
    per_group = kbar.shape[1]
    return kbar[kernels, inputs // groups if inflate else inputs % per_group]


def finish(low: Sequence[torch.Tensor] | torch.Tensor, size: Sequence[int], rectify: bool = True) -> torch.Tensor:
    """Low-resolution tubes (all of one shape, stacked or a list) → (M, *size) in [0, 1]."""
    stack = low if isinstance(low, torch.Tensor) else torch.stack(list(low))
    if rectify:
        stack = stack.clamp_min(0)
    return minmax(upsample(stack.float(), tuple(size)))
