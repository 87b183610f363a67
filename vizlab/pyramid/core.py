"""`ClassFeaturePyramid`: build once per model, call on batches of clips (or images).

    pyramid = ClassFeaturePyramid(model)              # θ and D from the per-network table
    result = pyramid(x, target=None)                   # x (N, 3, T, H, W) normalised, on the model's device
    result.saliency                                    # (N, T, H, W) class-level tubes in [0, 1]
    tree = result.tree(0)                              # clip 0's KernelTree: .to_nested(), .to_flat()
    tubes = result.tubes(0, [n.id for n in tree.nodes if result.has_tube(0, n.id)])   # (M, T, H, W)

The first call for an input shape traces the network (one forward of one clip) and plans the
levels; every call then runs one forward over the batch that records exactly the activations the
plan needs (means for the back-step, maps for the tubes), back-steps all clips together and
computes every node's tube at its layer's resolution (upsampled on demand).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vizlab.errors import ConfigError
from vizlab.methods.base import Target, logits_of, resolve_target
from vizlab.pyramid.backstep import Context, Level, backstep
from vizlab.pyramid.defaults import defaults_for
from vizlab.pyramid.graph import Graph, Recorder, trace
from vizlab.pyramid.plan import Plan, build_plan
from vizlab.pyramid.tree import KernelTree, Node
from vizlab.pyramid.tubes import finish, low_res_tubes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def small_ops(device: torch.device) -> Iterator[None]:
    """On the CPU, run with one intra-op thread (restored after): the back-step and the tubes are many small
    ops, for which thread synchronisation costs more than it gains — 5-30× more on a loaded machine
    (measured on ResNet-3D-101: 35-41 ms with 1 thread, 0.06-1.1 s with 2, median of 7)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_options(threshold: Any, depth: Any, top_k: Any) -> None:
    """ConfigError for a threshold outside (0, 1], a depth < 1, or a bad top_k."""
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0 < threshold <= 1):
        raise ConfigError(f"pyramid threshold must be a number in (0, 1] (or null: the network's default), "
                          f"got {threshold!r}.")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ConfigError(f"pyramid depth must be an integer >= 1 (or null: the network's default), got {depth!r}.")
    values = top_k if isinstance(top_k, (list, tuple)) else [top_k]
    if any(v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1) for v in values):
        raise ConfigError(f"pyramid top_k must be null, an integer >= 1, or a list of those (one per level), "
                          f"got {top_k!r}.")


@dataclass
class PyramidResult:
    """A batch's pyramids. levels[d]: the `Level` of every clip; low_tubes[d][m]: node m's tube at its
    layer's resolution (None without children); saliency (N, *S) / raw (N, *S'): the class-level tubes.
    seconds: forward (the recording pass), backstep, tubes, trace (0 unless this call traced)."""

    plan: Plan
    levels: list[Level]
    low_tubes: list[list[torch.Tensor | None]]
    target: torch.Tensor
    logits: torch.Tensor
    size: tuple[int, ...]
    saliency: torch.Tensor
    raw: torch.Tensor
    settings: dict[str, Any]
    seconds: dict[str, float]
    class_names: Sequence[str] = ()
    _rows: dict[int, list[tuple[int, int]]] = field(default_factory=dict, repr=False)

    @property
    def num_clips(self) -> int:
        return int(self.target.numel())

    def rows(self, clip: int) -> list[tuple[int, int]]:
        """(level, row) of every node of clip `clip`, in node-id order."""
        if clip not in self._rows:
            self._rows[clip] = [(d, int(r)) for d, level in enumerate(self.levels)
                                for r in (level.clip == clip).nonzero()[:, 0].tolist()]
        return self._rows[clip]

    def tree(self, clip: int) -> KernelTree:
        """Clip `clip`'s kernel tree (node ids in level order; node 0 = the class)."""
        rows = self.rows(clip)
        ids = {pos: i for i, pos in enumerate(rows)}
        graph = self.plan.graph
        nodes = []
        for i, (d, r) in enumerate(rows):
            level = self.levels[d]
            op = graph.ops[int(level.op[r])]
            parent = None if d == 0 else ids[(d - 1, int(level.parent[r]))]
            nodes.append(Node(i, d, op.module or op.func, int(level.kernel[r]), int(level.key[r]),
                              float(level.contribution[r]), float(level.relative[r]), parent))
        levels = [[{"layer": layer.name, "offset": layer.offset, "kernels": layer.kernels} for layer in layers]
                  for layers in self.plan.levels]
        target = int(self.target[clip])
        name = self.class_names[target] if 0 <= target < len(self.class_names) else str(target)
        return KernelTree(nodes, levels, self.settings["depth"], {"target_name": name, **self.settings})

    def has_tube(self, clip: int, node: int) -> bool:
        d, r = self.rows(clip)[node]
        return d < len(self.low_tubes) and self.low_tubes[d][r] is not None

    def tubes(self, clip: int, nodes: Sequence[int]) -> torch.Tensor:
        """(M, *S) tubes in [0, 1] at the input's resolution of nodes (ids of `tree(clip)`) with children."""
        lows = []
        for node in nodes:
            if not self.has_tube(clip, node):
                raise ConfigError(f"node {node} of clip {clip} has no children, so no tube.")
            d, r = self.rows(clip)[node]
            lows.append(self.low_tubes[d][r])
        if not lows:
            return torch.zeros(0, *self.size, device=self.saliency.device)
        out = torch.empty(len(lows), *self.size, device=self.saliency.device)
        shapes: dict[tuple[int, ...], list[int]] = {}
        for i, low in enumerate(lows):
            shapes.setdefault(tuple(low.shape), []).append(i)
        for idx in shapes.values():
            out[idx] = finish([lows[i] for i in idx], self.size, rectify=not self.plan.strict)
        return out


class ClassFeaturePyramid:
    """Class Feature Pyramids (Stergiou et al. 2019) on any 2-D or 3-D CNN with a GAP + classifier head.

    threshold θ in (0, 1] and depth D >= 1 (levels of kernels; D − 1 back-steps): None = the per-network
    default (`vizlab.pyramid.defaults`). top_k: None, an int, or one entry per level 1..D — of each
    parent's selected children keep the k strongest. strict_original: the published semantics
    (`vizlab.pyramid.backstep`, `plan`, `tubes`); weighted: contribution-weighted tubes (None: True,
    False under strict_original).
    """

    def __init__(self, model: nn.Module, threshold: float | None = None, depth: int | None = None,
                 top_k: int | Sequence[int | None] | None = None, strict_original: bool = False,
                 weighted: bool | None = None) -> None:
        check_options(threshold, depth, top_k)
        if not isinstance(strict_original, bool) or (weighted is not None and not isinstance(weighted, bool)):
            raise ConfigError("pyramid strict_original must be true or false and weighted true, false or null.")
        table = defaults_for(model)
        self.model = model
        self.threshold = float(table.threshold if threshold is None else threshold)
        self.depth = int(table.depth if depth is None else depth)
        top = list(top_k) if isinstance(top_k, (list, tuple)) else [top_k] * self.depth
        if len(top) != self.depth:
            raise ConfigError(f"pyramid top_k lists one entry per level: {self.depth} for depth {self.depth}, "
                              f"got {len(top)}.")
        self.top_k = top
        self.strict = strict_original
        self.weighted = (not strict_original) if weighted is None else weighted
        self._plans: dict[tuple, Plan] = {}
        self._graphs: dict[tuple, Graph] = {}

    @property
    def settings(self) -> dict[str, Any]:
        info = getattr(self.model, "info", None)
        return {"model": getattr(info, "name", type(self.model).__name__), "threshold": self.threshold,
                "depth": self.depth, "top_k": self.top_k, "strict_original": self.strict, "weighted": self.weighted}

    def plan_for(self, x: torch.Tensor) -> tuple[Plan, float]:
        """The plan for inputs shaped like x (traced from x[:1] on first use) and the seconds it took."""
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        if key in self._plans:
            return self._plans[key], 0.0
        start = time.perf_counter()
        graph = self._graphs.get(key) or trace(self.model, x[:1])
        self._graphs[key] = graph
        self._plans[key] = build_plan(graph, self.depth, self.strict)
        return self._plans[key], time.perf_counter() - start

    def record(self, plan: Plan, x: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
        """One forward of the batch: (logits, means, maps) of everything `plan` needs."""
        recorder = Recorder(plan.record_slots(), plan.expected_calls())
        with recorder:
            logits = logits_of(self.model(x))
        if recorder.mismatch:
            raise ConfigError("The network's forward pass made different calls than when it was traced "
                              f"({recorder.mismatch}); the pyramid needs a forward whose operations depend on "
                              "the input shape only.")
        return logits, recorder.gaps, recorder.maps

    def select(self, plan: Plan, gaps: dict, logits: torch.Tensor, target: torch.Tensor) -> tuple[list[Level], Context]:
        """The back-step of a recorded batch: every clip's levels (and the context the tubes reuse)."""
        ctx = Context(plan, gaps, logits)
        with small_ops(logits.device):
            return backstep(plan, gaps, logits, target, self.threshold, self.top_k, ctx), ctx

    def tube_maps(self, plan: Plan, ctx: Context, maps: dict, levels: list[Level]) -> list[list[torch.Tensor | None]]:
        """Every node's tube at its layer's resolution (see vizlab.pyramid.tubes)."""
        with small_ops(ctx.logits.device):
            return low_res_tubes(plan, ctx, maps, levels, self.weighted)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, target: Target = None) -> PyramidResult:
        plan, traced = self.plan_for(x)
        device = x.device
        _sync(device)
        start = time.perf_counter()
        logits, gaps, maps = self.record(plan, x)
        _sync(device)
        forward = time.perf_counter()
        t = resolve_target(target, logits)
        levels, ctx = self.select(plan, gaps, logits, t)
        _sync(device)
        stepped = time.perf_counter()
        low = self.tube_maps(plan, ctx, maps, levels)
        feature = maps[plan.candidates[(0, plan.head.op.index)].map_slot]
        raw = torch.stack([tube if tube is not None else feature.new_zeros(feature.shape[2:], dtype=torch.float32)
                           for tube in (low[0] if low else [None] * x.shape[0])])
        saliency = finish(raw, x.shape[2:], rectify=not self.strict)
        _sync(device)
        done = time.perf_counter()
        seconds = {"trace": traced, "forward": forward - start, "backstep": stepped - forward,
                   "tubes": done - stepped}
        names = getattr(getattr(self.model, "info", None), "class_names", ()) or ()
        return PyramidResult(plan, levels, low, t, logits, tuple(x.shape[2:]), saliency, raw, self.settings, seconds,
                             names)
