"""The back-step: select, level by level, the kernels that feed the kernels already selected.

For a parent kernel i of layer C (the classifier at level 0) and a candidate kernel j of a layer P
feeding C's input channel x(j), the contribution is (spec §1.4/§1.9)

    p_ij = k̄_C[i, x(j)] · ā_C[x(j)] · s_P[j]

k̄_C = C's weight averaged over its kernel window (zero outside i's group for grouped and
depth-wise convs), ā_C = the spatio-temporal mean of C's actual input (after BN/ReLU/pooling), so
k̄·ā is the linearised share of input channel x(j) in the mean of output i — exact but for padding
borders; s_P[j] = P's share of that channel when it is a sum (1 otherwise; see plan.Factor).

Fixed rule (default): r = ReLU(p) / max ReLU(p) over all candidates of the parent, select r ≥ θ
(kernels giving at least θ of the strongest positive contribution; none if nothing contributes
positively). Class level: p_i = W[c, i] · v_i, v = the pooled features the classifier reads.
strict_original: the published rule — class level minmax of the whole weight matrix W (all classes
together, no activations) ≥ θ; below, p ← p / Σp (sign flip when Σp < 0), minmax per parent, ≥ θ,
grouped kernels inflated by repetition, and the previous conv's raw output as ā.
top_k (both): of the selected children of each parent, keep the k largest r.

Everything is batched: one matrix op per (level, parent layer) over all selected kernels of all clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vizlab.pyramid.plan import Candidates, Plan


@dataclass
class Level:
    """The nodes of one level for every clip of a batch, as columns (M nodes).

    clip: (M,) sample index. parent: (M,) row in the previous level (-1 at level 0). op: (M,) call index
    of the node's layer (the classifier at level 0). kernel: (M,) channel of that layer (the class at
    level 0). key: (M,) the level key (kernel + its layer's offset in the level). entry: (M,) the row of
    the parent's candidate table (-1 at level 0). contribution: (M,) p (level 0: the logit).
    relative: (M,) r in [0, 1] (level 0: 1)."""

    clip: torch.Tensor
    parent: torch.Tensor
    op: torch.Tensor
    kernel: torch.Tensor
    key: torch.Tensor
    entry: torch.Tensor
    contribution: torch.Tensor
    relative: torch.Tensor

    def __len__(self) -> int:
        return int(self.clip.numel())

    @staticmethod
    def cat(parts: list[Level], device: torch.device) -> Level:
        if not parts:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return Level(empty, empty, empty, empty, empty, empty, empty.float(), empty.float())
        fields = {k: torch.cat([getattr(p, k) for p in parts]) for k in Level.__dataclass_fields__}
        level = Level(**fields)
        order = _lexsort(level.clip, level.parent, level.key)
        return Level(**{k: v[order] for k, v in vars(level).items()})


def _lexsort(*keys: torch.Tensor) -> torch.Tensor:
    """Indices sorting by keys[0], then keys[1], ... (stable sorts from the last key)."""
    order = torch.arange(keys[0].numel(), device=keys[0].device)
    for key in reversed(keys):
        order = order[torch.sort(key[order], stable=True).indices]
    return order


def mean_kernel(plan: Plan, op: int) -> torch.Tensor:
    """k̄ of layer `op`: (C_out, C_in / groups) weight averaged over the kernel window (linear: W).
    Kept on the plan while the weight is unchanged (its version counter, bumped by in-place updates)."""
    weight = plan.graph.ops[op].weight
    cached = plan.kbar.get(op)
    if cached is not None and cached[0] == weight._version:
        return cached[1]
    weight = weight.float()
    kbar = weight.flatten(2).mean(2) if weight.dim() > 2 else weight
    plan.kbar[op] = (plan.graph.ops[op].weight._version, kbar)
    return kbar


def dense_rows(kbar: torch.Tensor, kernels: torch.Tensor, groups: int, inflate: bool) -> torch.Tensor:
    """(R, C_in) mean-kernel rows of output kernels `kernels`. Grouped: kernel i reads only its group
    γ = i // (C_out / g), zeros elsewhere; `inflate` repeats each weight g times instead (the original's bug)."""
    rows = kbar[kernels]
    if groups == 1:
        return rows
    if inflate:
        return rows.repeat_interleave(groups, dim=1)
    group = kernels // (kbar.shape[0] // groups)
    dense = rows.new_zeros(rows.shape[0], groups, rows.shape[1])
    dense[torch.arange(rows.shape[0], device=rows.device), group] = rows
    return dense.flatten(1)


def shares(ctx: Context, cand: Candidates) -> torch.Tensor:
    """(N, L) each candidate's share of the input channel it feeds (1 without sums on its path)."""
    n, device = ctx.logits.shape[0], ctx.logits.device
    parts = []
    for src in cand.sources:
        total = None
        for chain in src.chains:
            share = ctx.chain_share(chain, src.channels)
            if share is not None:
                total = share if total is None else total + share
        parts.append(torch.ones(n, src.channels, device=device) if total is None else total)
    return torch.cat(parts, 1) if parts else torch.ones(n, 0, device=device)


def relative(p: torch.Tensor, strict: bool) -> torch.Tensor:
    """(R, L) contributions → r in [0, 1] per row (module docstring)."""
    if strict:
        total = p.sum(1, keepdim=True)
        p = torch.where(total != 0, p / torch.where(total != 0, total, 1), p)
        lo, hi = p.amin(1, keepdim=True), p.amax(1, keepdim=True)
        return torch.where(hi > lo, (p - lo) / (hi - lo).clamp_min(1e-30), torch.zeros_like(p))
    pos = p.clamp_min(0)
    peak = pos.amax(1, keepdim=True)
    return torch.where(peak > 0, pos / peak.clamp_min(1e-30), torch.zeros_like(p))


def choose(r: torch.Tensor, threshold: float, top_k: int | None) -> torch.Tensor:
    """(R, L) bool: r ≥ θ, and among those the top_k largest per row."""
    keep = r >= threshold
    if top_k is not None and r.shape[1] > top_k:
        ranked = torch.where(keep, r, torch.full_like(r, -1.0))
        best = ranked.topk(top_k, dim=1).indices
        limited = torch.zeros_like(keep)
        limited.scatter_(1, best, True)
        keep &= limited
    return keep


class Context:
    """What one batch's back-step reads: the recorded means and the logits, plus what it derives from them
    once — each sum's operand fractions, the products of fractions along shortcut chains (shared by
    every source further down the chain) and each parent's shares."""

    def __init__(self, plan: Plan, gaps: dict, logits: torch.Tensor) -> None:
        self.plan, self.gaps, self.logits = plan, gaps, logits
        self._fractions: dict[int, list[torch.Tensor]] = {}
        self._chains: dict[tuple, torch.Tensor | None] = {}
        self._shares: dict[tuple[int, int], torch.Tensor] = {}

    def kbar(self, op: int) -> torch.Tensor:
        return mean_kernel(self.plan, op)

    def fraction(self, add: int) -> list[torch.Tensor]:
        """Per operand of sum `add`: |its mean| / Σ |every operand's mean|, (N, C) (equal split where all are 0)."""
        if add not in self._fractions:
            means = torch.stack([self.gaps[(add, o)].abs() for o in self.plan.graph.ops[add].inputs])
            den = means.sum(0)
            parts = torch.where(den > 0, means / den.clamp_min(1e-30), 1.0 / means.shape[0])
            self._fractions[add] = list(parts)
        return self._fractions[add]

    def chain_share(self, chain: tuple, channels: int) -> torch.Tensor | None:
        """(N, channels) product of the fractions along `chain` (None for an empty chain), memoised by prefix."""
        if not chain:
            return None
        key = (chain, channels)
        if key not in self._chains:
            f = chain[-1]
            part = self.fraction(f.add)[f.slot][:, f.shift:f.shift + channels]
            head = self.chain_share(chain[:-1], channels)
            self._chains[key] = part if head is None else head * part
        return self._chains[key]

    def shares(self, cand: Candidates) -> torch.Tensor:
        key = (cand.level, cand.op)
        if key not in self._shares:
            self._shares[key] = shares(self, cand)
        return self._shares[key]


def contributions(ctx: Context, cand: Candidates, clips: torch.Tensor, kernels: torch.Tensor) -> tuple[torch.Tensor,
                                                                                                        torch.Tensor]:
    """(R, L) contributions p and relative r of every candidate for parent kernels (clips[r], kernels[r])."""
    plan = ctx.plan
    kbar = ctx.kbar(cand.op)
    if plan.strict and cand.a_slot is None:  # the original's class level: global minmax of W, no activations
        lo, hi = kbar.min(), kbar.max()
        p = kbar[kernels][:, cand.x_index]
        return p, (p - lo) / (hi - lo).clamp_min(1e-30)
    groups = plan.graph.ops[cand.op].groups
    rows = dense_rows(kbar, kernels, groups, inflate=plan.strict)[:, cand.x_index]
    means = ctx.gaps[cand.a_slot][clips][:, cand.x_index]
    p = rows * means
    if not plan.strict:
        p = p * ctx.shares(cand)[clips]
    return p, relative(p, plan.strict)


def backstep(plan: Plan, gaps: dict, logits: torch.Tensor, target: torch.Tensor, threshold: float,
             top_k: list[int | None], ctx: Context | None = None) -> list[Level]:
    """The pyramid of every clip: levels 0..D (fewer where the network ends), see the module docstring.

    gaps: the Recorder's means; logits (N, K); target (N,); top_k: one entry (or None) per level 1..D."""
    device = logits.device
    ctx = ctx or Context(plan, gaps, logits)
    n = logits.shape[0]
    arange = torch.arange(n, device=device)
    head = plan.head.op.index
    levels = [Level(arange, torch.full_like(arange, -1), torch.full_like(arange, head), target, target.clone(),
                    torch.full_like(arange, -1), logits[arange, target].float(), torch.ones(n, device=device))]
    for d in range(1, len(plan.levels)):
        prev, parts = levels[-1], []
        for op in prev.op.unique().tolist():
            cand = plan.candidates.get((d - 1, op))
            if cand is None or cand.size == 0:
                continue
            rows = (prev.op == op).nonzero()[:, 0]
            if cand.x_index.device != device:
                _to(cand, device)
            p, r = contributions(ctx, cand, prev.clip[rows], prev.kernel[rows])
            row, entry = choose(r, threshold, top_k[d - 1]).nonzero(as_tuple=True)
            parts.append(Level(prev.clip[rows[row]], rows[row], cand.layer[entry], cand.kernel[entry], cand.key[entry],
                               entry, p[row, entry], r[row, entry]))
        level = Level.cat(parts, device)
        if len(level) == 0:
            break
        levels.append(level)
    return levels


def _to(cand: Candidates, device: torch.device) -> None:
    for name in ("x_index", "layer", "kernel", "key"):
        setattr(cand, name, getattr(cand, name).to(device))
