"""Run "the rest of the network" after a layer many times on a substituted layer output — the
inner loop of methods that optimise something applied at a layer (L2-CAF's filter).

    runner, notes = head_runner(model, layer, x, reference, mode="fast")
    logits = runner.logits(lambda a: a * f, rows)   # the layer outputs a * f; rows of x (None: all)

Engines, fastest first (`mode="fast"` takes the first that works, `mode="slow"` the last):
  - "fx": a `torch.fx` trunk/head split (vizlab.methods.split): the trunk runs once, each call
    runs the head only;
  - "replay": for networks `torch.fx` cannot trace, a forward pass whose modules before the layer
    return their recorded outputs (vizlab.methods.replay): the same work as the head plus the
    Python glue of the trunk;
  - "full": a full forward pass per call with a forward hook that substitutes the layer's output.
The fast engines verify themselves against the model's logits on x once; `notes` says why an
engine was passed over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from vizlab.errors import VizlabError
from vizlab.layers import unwrap
from vizlab.methods.base import logits_of
from vizlab.methods.replay import ReplayedForward
from vizlab.methods.split import Split, SplitError, split_at

Substitute = Callable[[torch.Tensor], torch.Tensor]
ENGINES = ("fx", "replay", "full")


class HeadRunner(Protocol):
    engine: str
    activation_shape: torch.Size
    can_select_rows: bool

    def logits(self, substitute: Substitute, rows: torch.Tensor | None) -> torch.Tensor: ...


class TracedHead:
    """Engine "fx": the head of a `Split` on the trunk's outputs for x (computed once).

    reference: the model's logits on x, to verify the split against; None for a split verified
    before (then `clean_logits` = head(trunk(x)) are the model's logits, and the trunk is the only
    forward pass of the call; consecutive identical rows of x — one sample repeated for several
    targets — go through it once)."""

    engine = "fx"

    def __init__(self, split: Split, x: torch.Tensor, reference: torch.Tensor | None) -> None:
        self.split = split
        if reference is None:
            with torch.no_grad():
                self.activation, self.sides = self._trunk(x)
                self.clean_logits = logits_of(split.run_head(self.activation.clone(), self.sides))
        else:
            self.activation, self.sides = split.verify(x, reference)
            self.clean_logits = reference
        self.activation_shape = self.activation.shape
        self.batch = x.shape[0]
        self.can_select_rows = split.select_rows(self.sides, torch.arange(1, device=x.device), self.batch) is not None

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        unique, inverse = repeated_rows(x)
        if unique is not None:
            activation, sides = self.split.run_trunk(x[unique])
            expanded = self.split.select_rows(sides, inverse, unique.numel())
            if expanded is not None:
                return activation[inverse], expanded
        return self.split.run_trunk(x)

    def logits(self, substitute: Substitute, rows: torch.Tensor | None) -> torch.Tensor:
        if rows is None:
            a, sides = self.activation, self.sides
        else:
            a, sides = self.activation[rows], self.split.select_rows(self.sides, rows, self.batch)
        out = substitute(a)
        return logits_of(self.split.run_head(out.clone() if out is self.activation else out, sides))


class ReplayHead(ReplayedForward):
    """Engine "replay" (see vizlab.methods.replay)."""

    def __init__(self, model: nn.Module, layer: nn.Module, x: torch.Tensor, reference: torch.Tensor) -> None:
        super().__init__(model, layer, x, reference)
        self.activation_shape = self.activation.shape


class FullForward:
    """Engine "full": model(x[rows]) with a forward hook on `layer` returning substitute(output)."""

    engine = "full"
    can_select_rows = True

    def __init__(self, model: nn.Module, layer: nn.Module, x: torch.Tensor, activation_shape: torch.Size) -> None:
        self.model, self.layer, self.x = model, layer, x
        self.activation_shape = activation_shape

    def logits(self, substitute: Substitute, rows: torch.Tensor | None) -> torch.Tensor:
        handle = self.layer.register_forward_hook(lambda _m, _i, out: substitute(out))
        try:
            return logits_of(self.model(self.x if rows is None else self.x[rows]))
        finally:
            handle.remove()


def repeated_rows(x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(first row of each run of consecutive identical rows, the run of every row), or (None, None)
    when no two neighbouring rows are equal. One element-wise comparison of x with itself shifted."""
    if x.shape[0] < 2:
        return None, None
    same = (x[1:] == x[:-1]).flatten(1).all(dim=1)
    if not bool(same.any()):
        return None, None
    starts = torch.cat([same.new_ones(1), ~same])
    return starts.nonzero()[:, 0], starts.cumsum(0) - 1


def qualified_name(model: nn.Module, layer: nn.Module) -> str:
    """The dotted name of `layer` inside the (unwrapped) model."""
    for name, module in unwrap(model).named_modules():
        if module is layer:
            return name
    raise SplitError("the layer is not a module of this model")


def verified_traced_head(model: nn.Module, layer: nn.Module, x: torch.Tensor,
                         splits: dict[str, Split | SplitError]) -> TracedHead | None:
    """The fx engine from a split in `splits` that reproduced the model before, else None."""
    try:
        cached = splits.get(qualified_name(model, layer))
    except SplitError:
        return None
    return TracedHead(cached, x, None) if isinstance(cached, Split) and cached.verified else None


def head_runner(model: nn.Module, layer: nn.Module, x: torch.Tensor, reference: torch.Tensor,
                activation_shape: torch.Size, mode: str = "fast",
                splits: dict[str, Split | SplitError] | None = None) -> tuple[HeadRunner, list[str]]:
    """The fastest engine that reproduces `reference` (model(x)'s logits) for mode "fast"; the
    full forward for "slow". splits: a cache of fx splits by layer name (they do not depend on x).
    Returns the runner and the reasons the faster engines were not used."""
    notes: list[str] = []
    if mode == "fast":
        try:
            name = qualified_name(model, layer)
            cached = splits.get(name) if splits is not None else None
            if cached is None:
                try:
                    cached = split_at(unwrap(model), name)
                except SplitError as err:
                    cached = err
                if splits is not None:
                    splits[name] = cached
            if isinstance(cached, SplitError):
                raise cached
            return TracedHead(cached, x, reference), notes
        except SplitError as err:
            notes.append(f"fx split: {err}")
        try:
            return ReplayHead(model, layer, x, reference), notes
        except SplitError as err:
            notes.append(f"replay: {err}")
        except VizlabError:
            raise
        except Exception as err:  # noqa: BLE001 - a replay that breaks the forward pass: use the full one
            notes.append(f"replay: {type(err).__name__}: {err}")
    return FullForward(model, layer, x, activation_shape), notes


__all__ = ["ENGINES", "FullForward", "HeadRunner", "ReplayHead", "TracedHead", "head_runner", "qualified_name",
           "verified_traced_head"]
