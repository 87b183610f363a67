"""Replay the part of a network before a layer from a cache, for networks `torch.fx` cannot trace.

One recording forward pass notes every module call (which module, its n-th call, when it started
and ended, which call encloses it). Calls that *end before the layer starts* cannot depend on the
layer's output; the outermost of them (the "frontier": e.g. the stem and the first stages, or
the blocks before the layer inside its stage) are recorded once, and in later passes their
module's `forward` returns the recorded output instead of computing it, so everything nested in
them is skipped. The layer itself returns a substitute computed from its recorded output.
Python code between modules still runs (it is cheap: reshapes, additions, checks), so the result
is exact for any network whose modules are deterministic; `ReplayedForward` verifies it once
against the model's own output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from vizlab.layers import unwrap
from vizlab.methods.base import logits_of
from vizlab.methods.split import SplitError

Substitute = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _Call:
    module: nn.Module
    parent: int | None
    start: int
    end: int = -1


@dataclass
class _Plan:
    """What to replay: per module, its executed calls in order (True = return the recording)."""

    replay: dict[nn.Module, list[bool]] = field(default_factory=dict)
    frontier: list[int] = field(default_factory=list)   # indices into the recorded calls


def _clone(value: Any) -> Any:
    return tree_map(lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v, value)


def _rows(value: Any, rows: torch.Tensor | None) -> Any:
    if rows is None:
        return value
    return tree_map(lambda v: v[rows] if isinstance(v, torch.Tensor) else v, value)


def _row_selectable(value: Any, batch: int) -> bool:
    leaves, _ = tree_flatten(value)
    return all(not isinstance(v, torch.Tensor) or (v.dim() > 0 and v.shape[0] == batch) for v in leaves)


def _versions(value: Any) -> list[int]:
    return [v._version for v in tree_flatten(value)[0] if isinstance(v, torch.Tensor)]


class ReplayedForward:
    """model(x) with the calls before `layer` replayed from a cache and `layer`'s output substituted.

    x: the input the cache is recorded on (batch B). reference: model(x)'s logits, to verify the
    replay (SplitError if it differs). activation: the layer's output on x.
    `logits(substitute, rows)`: the model's logits on x[rows] (None: all rows) when the layer
    outputs substitute(activation[rows]). can_select_rows: every recorded output is (B, ...).
    """

    engine = "replay"

    def __init__(self, model: nn.Module, layer: nn.Module, x: torch.Tensor, reference: torch.Tensor) -> None:
        self.model, self.layer, self.x = model, layer, x
        self.clone_outputs = False
        calls, layer_call = self._record_calls()
        self.plan = self._plan(calls, layer_call)
        self.calls = calls
        own = [m for m in (*self.plan.replay, layer) if "forward" in m.__dict__]
        if own:
            raise SplitError(f"{type(own[0]).__name__} has its own `forward` attribute, which replay would overwrite")
        self._record_outputs()
        self.can_select_rows = all(_row_selectable(v, x.shape[0]) for v in (*self.outputs, self.activation))
        self._verify(reference)

    # --- recording ----------------------------------------------------------------------------
    @torch.no_grad()
    def _record_calls(self) -> tuple[list[_Call], int]:
        calls: list[_Call] = []
        stack: list[int] = []
        clock = [0]
        handles = []

        def pre(module, _args):
            clock[0] += 1
            calls.append(_Call(module, stack[-1] if stack else None, clock[0]))
            stack.append(len(calls) - 1)

        def post(_module, _args, _out):
            clock[0] += 1
            calls[stack.pop()].end = clock[0]

        try:
            for name, module in unwrap(self.model).named_modules():
                if name:
                    handles.append(module.register_forward_pre_hook(pre))
                    handles.append(module.register_forward_hook(post))
            self.model(self.x)
        finally:
            for h in handles:
                h.remove()
        layer_calls = [i for i, c in enumerate(calls) if c.module is self.layer]
        if len(layer_calls) != 1:
            raise SplitError(f"the layer runs {len(layer_calls)} times per forward pass")
        return calls, layer_calls[0]

    @staticmethod
    def _plan(calls: list[_Call], layer_call: int) -> _Plan:
        begin = calls[layer_call].start
        before = [c.end < begin for c in calls]
        plan = _Plan()
        for i, c in enumerate(calls):
            frontier = before[i] and (c.parent is None or not before[c.parent])
            executed = not before[i] or frontier
            if executed:
                plan.replay.setdefault(c.module, []).append(frontier)
            if frontier:
                plan.frontier.append(i)
        plan.replay = {m: flags for m, flags in plan.replay.items() if any(flags)}
        return plan

    @torch.no_grad()
    def _record_outputs(self) -> None:
        """Clone the frontier calls' outputs and the layer's output (one more clean forward)."""
        wanted = {id(self.calls[i].module) for i in self.plan.frontier}
        counts: dict[int, int] = {}
        recorded: dict[tuple[int, int], Any] = {}
        executed_index: dict[int, list[int]] = {}
        for i, c in enumerate(self.calls):
            executed_index.setdefault(id(c.module), []).append(i)
        frontier = set(self.plan.frontier)
        activation: list[Any] = []
        handles = []

        def post(module, _args, out):
            k = counts.get(id(module), 0)
            counts[id(module)] = k + 1
            if module is self.layer:
                activation.append(out.detach().clone() if isinstance(out, torch.Tensor) else out)
            elif id(module) in wanted and executed_index[id(module)][k] in frontier:
                recorded[(id(module), k)] = _clone(out)

        try:
            for name, module in unwrap(self.model).named_modules():
                if name:
                    handles.append(module.register_forward_hook(post))
            self.model(self.x)
        finally:
            for h in handles:
                h.remove()
        # per module, the recorded outputs of its frontier calls in order of execution
        self.cache: dict[nn.Module, list[Any]] = {}
        for i in self.plan.frontier:
            module = self.calls[i].module
            k = executed_index[id(module)].index(i)
            self.cache.setdefault(module, []).append(recorded[(id(module), k)])
        self.outputs = [v for values in self.cache.values() for v in values]
        if not activation or not isinstance(activation[0], torch.Tensor):
            raise SplitError("the layer's output is not a tensor")
        self.activation = activation[0]

    @torch.no_grad()
    def _verify(self, reference: torch.Tensor) -> None:
        versions = [_versions(v) for v in self.outputs]
        out = self.logits(lambda a: a.clone(), None)
        if [_versions(v) for v in self.outputs] != versions:  # something after the cache writes into it
            self.clone_outputs = True
            self._record_outputs()
            out = self.logits(lambda a: a.clone(), None)
        if out.shape != reference.shape or not torch.allclose(out, reference, atol=1e-4, rtol=1e-4):
            raise SplitError("replaying the modules before the layer does not reproduce the model's output "
                             "(a module before the layer is not deterministic or has side effects)")

    # --- replay -------------------------------------------------------------------------------
    def logits(self, substitute: Substitute, rows: torch.Tensor | None) -> torch.Tensor:
        x = self.x if rows is None else self.x[rows]
        with self._patched(substitute, rows):
            return logits_of(self.model(x))

    @contextmanager
    def _patched(self, substitute: Substitute, rows: torch.Tensor | None) -> Iterator[None]:
        patched: list[nn.Module] = []
        try:
            for module, flags in self.plan.replay.items():
                module.forward = self._replaying(module, flags, rows)
                patched.append(module)

            def layer_forward(*_args, **_kwargs):
                a = self.activation if rows is None else self.activation[rows]
                out = substitute(a)
                return out.clone() if out is self.activation else out

            self.layer.forward = layer_forward
            patched.append(self.layer)
            yield
        finally:
            for module in patched:
                del module.forward  # the class's forward shows through again

    def _replaying(self, module: nn.Module, flags: list[bool], rows: torch.Tensor | None):
        original = type(module).forward.__get__(module)
        cached = iter(self.cache[module])
        calls = iter(flags)

        def forward(*args, **kwargs):
            if next(calls, False):
                value = _rows(next(cached), rows)
                return _clone(value) if self.clone_outputs and rows is None else value
            return original(*args, **kwargs)

        return forward
