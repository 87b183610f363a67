"""Trace a network's real forward pass into a dataflow graph of tensors.

`trace(model, x)` runs `model(x)` once under a `TorchFunctionMode` that sees every torch function
call (F.conv3d, torch.cat, `a + b`, F.relu, ...) with its actual tensors, so any Python control
flow in `forward` is fine (no symbolic tracing, no per-network instrumentation). Every tensor
version becomes a node; every call that makes a tensor becomes an `Op` of one kind:

- conv:   F.conv1d/2d/3d whose weight is (a view of) a module's parameter — named by that module;
- linear: F.linear with a module's weight;
- add:    the sum (or difference) of two traced tensors of the same shape (residual shortcuts,
          MFNet's `x + h`);
- cat:    a concatenation along the channel axis (Inception branches);
- pass:   a channel-preserving op: channel j of the output depends only on channel j of the one
          traced input (BN, ReLU & co, pooling, padding, dropout, interpolation, flatten of 1×1
          maps, spatial means, scaling by a constant or by a per-channel gate as in SE blocks);
- opaque: anything else (mixes channels in an unknown way).

Ops are indexed by the call counter of the forward (every torch-function call, including ones that
return no tensor), so a second forward of the same network on inputs of the same shape makes the
same calls in the same order: `Recorder` uses that to capture chosen tensors by index.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from vizlab.errors import ConfigError
from vizlab.layers import unwrap

CONV_FUNCS = frozenset({"conv1d", "conv2d", "conv3d"})
ADD_FUNCS = frozenset({"add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__", "__isub__"})
SCALE_FUNCS = frozenset({"mul", "mul_", "__mul__", "__rmul__", "__imul__", "div", "div_", "__truediv__",
                         "__itruediv__", "true_divide"})
CAT_FUNCS = frozenset({"cat", "concat", "concatenate"})
PASS_FUNCS = frozenset({
    # activations
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu",
    "gelu", "silu", "sigmoid", "sigmoid_", "tanh", "tanh_", "hardswish", "hardsigmoid", "mish", "softplus",
    "threshold", "threshold_", "clamp", "clamp_", "clamp_min", "clamp_min_", "clip", "abs",
    # per-channel normalisation
    "batch_norm", "instance_norm", "group_norm",
    # pooling (spatial only)
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "lp_pool1d", "lp_pool2d", "lp_pool3d", "max_pool1d_with_indices",
    "max_pool2d_with_indices", "max_pool3d_with_indices",
    # shape and copies
    "pad", "interpolate", "upsample", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
    "feature_alpha_dropout", "clone", "contiguous", "detach", "to", "float", "half", "double", "type_as",
    "flatten", "view", "reshape", "squeeze", "unsqueeze", "mean", "sum", "amax", "__getitem__",
})
VIEW_FUNCS = frozenset({"__getitem__", "view", "reshape", "unsqueeze", "squeeze", "flatten", "contiguous", "to",
                        "float", "half", "double", "detach", "clone", "expand"})


@dataclass(frozen=True)
class Operand:
    """Where a traced tensor sits in a call: args[pos] (key None), kwargs[key], or args[pos][item]."""

    node: int
    pos: int | None = None
    key: str | None = None
    item: int | None = None

    def fetch(self, args: tuple, kwargs: dict) -> torch.Tensor:
        value = args[self.pos] if self.key is None else kwargs[self.key]
        return value if self.item is None else value[self.item]


@dataclass
class Op:
    """One traced call that made a tensor. `inputs`: its traced tensor operands, in order."""

    index: int
    func: str
    kind: str                      # conv · linear · add · cat · pass · opaque
    inputs: tuple[Operand, ...]
    output: int                    # node id of the result
    shape: tuple[int, ...]         # result shape
    module: str | None = None      # conv / linear: the module that owns the weight
    weight: torch.Tensor | None = None  # conv: (C_out, C_in/g, *k) as used; linear: (K, M)
    groups: int = 1

    @property
    def channels(self) -> int:
        return self.shape[1] if len(self.shape) > 1 else 1


@dataclass
class Graph:
    """The traced forward. nodes[i] = (producing op index or -1 for the model input, shape)."""

    ops: dict[int, Op] = field(default_factory=dict)
    nodes: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    input_node: int = 0
    output_node: int | None = None
    calls: int = 0

    def producer(self, node: int) -> Op | None:
        index = self.nodes[node][0]
        return self.ops.get(index) if index >= 0 else None

    def shape(self, node: int) -> tuple[int, ...]:
        return self.nodes[node][1]

    def convs(self) -> list[Op]:
        """Every conv call, in execution order."""
        return [op for op in self.ops.values() if op.kind == "conv"]


def _tensors(args: tuple, kwargs: dict):
    """(Operand slot, tensor) for every tensor argument, lists/tuples included (torch.cat)."""
    for pos, value in enumerate(args):
        if isinstance(value, torch.Tensor):
            yield (pos, None, None), value
        elif isinstance(value, (list, tuple)):
            for item, v in enumerate(value):
                if isinstance(v, torch.Tensor):
                    yield (pos, None, item), v
    for key, value in kwargs.items():
        if isinstance(value, torch.Tensor):
            yield (None, key, None), value


def _name(func: Any) -> str:
    return getattr(func, "__name__", "") or ""


def _full_slice(value: Any) -> bool:
    return isinstance(value, slice) and value == slice(None)


class _Tracer(TorchFunctionMode):
    """Builds a `Graph` while the forward runs (see the module docstring)."""

    def __init__(self, params: dict[int, tuple[weakref.ref, str]]) -> None:
        super().__init__()
        self.graph = Graph()
        self.params = params                     # id(tensor) → (ref, module name) for weights and their views
        self.ids: dict[int, tuple[weakref.ref, int]] = {}
        self.calls: dict[str, int] = {}          # module → conv calls so far (modules called twice get #2, ...)

    def add_node(self, tensor: torch.Tensor, op_index: int) -> int:
        node = len(self.graph.nodes)
        self.graph.nodes.append((op_index, tuple(tensor.shape)))
        self.ids[id(tensor)] = (weakref.ref(tensor), node)
        return node

    def node_of(self, tensor: torch.Tensor) -> int | None:
        entry = self.ids.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def param_of(self, tensor: Any) -> str | None:
        entry = self.params.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        index = self.graph.calls
        self.graph.calls += 1
        out = func(*args, **kwargs)
        self.record(index, _name(func), args, kwargs, out)
        return out

    # --- classification of one call --------------------------------------------------------------
    def record(self, index: int, func: str, args: tuple, kwargs: dict, out: Any) -> None:
        tensors = list(_tensors(args, kwargs))
        if func in VIEW_FUNCS and tensors and isinstance(out, torch.Tensor):
            owner = self.param_of(tensors[0][1])
            if owner is not None:  # a view of a weight (e.g. I3D's weight[:, :, None, None, None])
                self.params[id(out)] = (weakref.ref(out), owner)
                return
        results = out if isinstance(out, (tuple, list)) else (out,)
        results = [t for t in results if isinstance(t, torch.Tensor)]
        if not results:
            return
        operands = tuple(Operand(node, *slot) for slot, t in tensors if (node := self.node_of(t)) is not None)
        first = results[0]
        kind, module, weight, groups = self.classify(func, args, kwargs, operands, first)
        if kind == "conv":
            count = self.calls[module] = self.calls.get(module, 0) + 1
            module = module if count == 1 else f"{module}#{count}"
        if kind in ("conv", "linear"):
            operands = operands[:1]
        elif kind == "pass":
            operands = tuple(o for o in operands if tuple(self.graph.shape(o.node)) == tuple(first.shape)
                             or len(operands) == 1)[:1]
        node = self.add_node(first, index)
        self.graph.ops[index] = Op(index, func, kind, operands, node, tuple(first.shape), module, weight, groups)
        for extra in results[1:]:
            self.add_node(extra, index)

    def classify(self, func: str, args: tuple, kwargs: dict, operands: tuple[Operand, ...],
                 out: torch.Tensor) -> tuple[str, str | None, torch.Tensor | None, int]:
        if func in CONV_FUNCS and operands and operands[0].pos == 0:
            weight = args[1] if len(args) > 1 else kwargs.get("weight")
            module = self.param_of(weight)
            if module is not None:
                groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
                return "conv", module, weight.detach(), int(groups)
            return "opaque", None, None, 1
        if func == "linear" and operands and operands[0].pos == 0:
            weight = args[1] if len(args) > 1 else kwargs.get("weight")
            module = self.param_of(weight)
            return ("linear", module, weight.detach(), 1) if module is not None else ("opaque", None, None, 1)
        if out.dim() < 2 or not operands:
            return "opaque", None, None, 1
        shapes = [tuple(self.graph.shape(o.node)) for o in operands]
        if func in CAT_FUNCS:
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            if dim in (1, 1 - out.dim()) and all(o.item is not None for o in operands):
                return "cat", None, None, 1
            return "opaque", None, None, 1
        same = [s for s in shapes if s == tuple(out.shape)]
        if func in ADD_FUNCS and len(operands) == 2 and len(same) == 2:
            return "add", None, None, 1
        if func in ADD_FUNCS | SCALE_FUNCS:
            # a constant, a buffer or a broadcast per-channel gate acting on one full-size tensor
            return ("pass", None, None, 1) if len(same) == 1 and _keeps_channels(shapes, out) else \
                ("opaque", None, None, 1)
        if func in PASS_FUNCS and len(operands) == 1 and _keeps_channels(shapes, out):
            if func == "__getitem__" and not _channel_safe_index(args[1] if len(args) > 1 else None):
                return "opaque", None, None, 1
            return "pass", None, None, 1
        return "opaque", None, None, 1


def _keeps_channels(shapes: list[tuple[int, ...]], out: torch.Tensor) -> bool:
    """Batch and channel axes unchanged (for a one-operand op, or the full-size operand)."""
    return any(len(s) >= 2 and s[:2] == tuple(out.shape[:2]) for s in shapes)


def _channel_safe_index(key: Any) -> bool:
    """x[:, :, ...]: indexing that leaves the batch and channel axes whole."""
    return isinstance(key, tuple) and len(key) >= 2 and _full_slice(key[0]) and _full_slice(key[1])


def weight_owners(model: nn.Module) -> dict[int, tuple[weakref.ref, str]]:
    """id(weight) → (weakref, dotted module name) for every conv and linear weight of `model`
    (names relative to a zoo model's `net`, as everywhere in vizlab)."""
    owners = {}
    for name, module in unwrap(model).named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            owners[id(weight)] = (weakref.ref(weight), name or type(module).__name__)
    return owners


def model_output(out: Any) -> torch.Tensor:
    """The logits tensor of a forward's return value (tuples, InceptionOutputs)."""
    from vizlab.methods.base import logits_of

    return logits_of(out)


@torch.no_grad()
def trace(model: nn.Module, x: torch.Tensor) -> Graph:
    """Run `model(x)` once and return its dataflow graph (see the module docstring)."""
    tracer = _Tracer(weight_owners(model))
    tracer.add_node(x, -1)
    with tracer:
        out = model(x)
    graph = tracer.graph
    logits = model_output(out)
    graph.output_node = tracer.node_of(logits)
    if graph.output_node is None:
        raise ConfigError(f"Could not follow the logits of {type(unwrap(model)).__name__} back through its "
                          "forward pass; the pyramid needs a network built from torch operations.")
    return graph


class Recorder(TorchFunctionMode):
    """Capture chosen tensors during a forward, by call index (from a `Graph` of the same network).

    wanted: call index → list of (slot, keep_map) where slot is an `Operand` (an input, read
    before the call, so in-place ops after it do not change it) or None (the call's result).
    Stores the spatio-temporal mean (N, C) of every captured tensor in `gaps`, and a detached copy
    in `maps` when keep_map. `expected`: call index → function name, checked on the way.
    """

    def __init__(self, wanted: dict[int, list[tuple[Operand | None, bool]]], expected: dict[int, str]) -> None:
        super().__init__()
        self.wanted, self.expected = wanted, expected
        self.calls = 0
        self.gaps: dict[tuple[int, Operand | None], torch.Tensor] = {}
        self.maps: dict[tuple[int, Operand | None], torch.Tensor] = {}
        self.mismatch: str | None = None

    def keep(self, index: int, slot: Operand | None, tensor: torch.Tensor, keep_map: bool) -> None:
        t = tensor.detach()
        self.gaps[(index, slot)] = t.float().mean(dim=tuple(range(2, t.dim()))) if t.dim() > 2 else t.float()
        if keep_map:
            self.maps[(index, slot)] = t.clone()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        index = self.calls
        self.calls += 1
        slots = self.wanted.get(index)
        if slots is None:
            return func(*args, **kwargs)
        if _name(func) != self.expected[index] and self.mismatch is None:
            self.mismatch = f"call {index} is {_name(func)!r}, traced as {self.expected[index]!r}"
        for slot, keep_map in slots:
            if slot is not None and self.mismatch is None:
                self.keep(index, slot, slot.fetch(args, kwargs), keep_map)
        out = func(*args, **kwargs)
        for slot, keep_map in slots:
            if slot is None and self.mismatch is None:
                first = out if isinstance(out, torch.Tensor) else out[0]
                self.keep(index, None, first, keep_map)
        return out
