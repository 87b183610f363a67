"""Split any traceable network at a layer into a trunk (input → the layer's output) and a head
(the layer's output → the model output), found generically with `torch.fx`.

    split = split_at(net, "layer4")
    activation, sides = split.run_trunk(x)        # once
    out = split.run_head(activation * f, sides)   # as often as needed: only what depends on the layer

The network is traced with the layer as a leaf, so its output is one graph node. The head is every
node downstream of that node (its users, their users, ...); whatever a head node needs that does not
depend on the layer — a residual shortcut from before the layer, the input itself, a shape — is a
*side input*: the trunk returns it and the head takes it as an argument. Both are `GraphModule`s
that share the network's parameters (nothing is copied).

`SplitError` says why a network cannot be split (dynamic control flow that `torch.fx` cannot trace,
a layer inside a leaf module, a layer that runs twice); callers fall back to a full forward per
call (a forward hook). `split_at` does not run the network; `Split.verify` checks trunk + head
against the model's own output on a real input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from vizlab.errors import ConfigError, VizlabError
from vizlab.methods.base import logits_of


class SplitError(VizlabError):
    """The network cannot be split at the layer (the message says why)."""


def _timm_notrace() -> tuple[tuple[type, ...], tuple[Any, ...]]:
    """The modules and functions timm marks as not traceable (its own fx feature extraction keeps
    them as single calls), or nothing when timm is not installed."""
    try:
        from timm.layers import _fx
    except ImportError:  # pragma: no cover - timm is a dependency, but the split does not need it
        return (), ()
    return tuple(getattr(_fx, "_leaf_modules", ())), tuple(getattr(_fx, "_autowrap_functions", ()))


class _LayerLeafTracer(fx.Tracer):
    """The default tracer, with the split layer kept as one call (a leaf) whatever its type, and
    timm's not-traceable modules and functions kept as single calls too."""

    def __init__(self, layer_name: str) -> None:
        leaves, functions = _timm_notrace()
        super().__init__(autowrap_functions=functions)
        self.layer_name, self.extra_leaves = layer_name, leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name == self.layer_name:
            return True
        if self.layer_name.startswith(module_qualified_name + ".") or not module_qualified_name:
            return False  # the layer is inside: trace into it
        return isinstance(m, self.extra_leaves) or super().is_leaf_module(m, module_qualified_name)


@dataclass
class Split:
    """trunk(x) → (activation, *sides); head(activation, *sides) → the network's output.

    side_names: the original graph nodes the head takes besides the activation.
    side_batched: per side input, True if it depends on the network input (so a tensor with the
    batch as its first dimension in a CNN), False if it is input-independent (a constant).
    """

    trunk: fx.GraphModule
    head: fx.GraphModule
    layer: str
    side_names: tuple[str, ...]
    side_batched: tuple[bool, ...]
    clone_sides: bool = False   # set by verify() when the head modifies a side input in place
    verified: bool = False      # set by verify() once trunk + head reproduced the model's output

    def run_trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[Any, ...]]:
        out = self.trunk(x)
        return out[0], tuple(out[1:])

    def run_head(self, activation: torch.Tensor, sides: Sequence[Any]) -> Any:
        if self.clone_sides:
            sides = [s.clone() if isinstance(s, torch.Tensor) else s for s in sides]
        return self.head(activation, *sides)

    def select_rows(self, sides: Sequence[Any], rows: torch.Tensor, batch: int) -> tuple[Any, ...] | None:
        """The side inputs for batch rows `rows` only, or None when some side input is not a
        (batch, ...) tensor (e.g. a shape taken from the input), so the head must see the whole batch."""
        out = []
        for value, batched in zip(sides, self.side_batched, strict=True):
            if not batched:
                out.append(value)
            elif isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch:
                out.append(value[rows])
            else:
                return None
        return tuple(out)

    @torch.no_grad()
    def verify(self, x: torch.Tensor, reference: torch.Tensor, atol: float = 1e-4, rtol: float = 1e-4
               ) -> tuple[torch.Tensor, tuple[Any, ...]]:
        """Run trunk + head on x and compare with `reference` (the model's logits on x); raise
        SplitError if they differ. Detects heads that modify a side input in place (then
        clone_sides is set). Returns the trunk's outputs on x: (activation, sides)."""
        activation, sides = self.run_trunk(x)
        versions = [s._version if isinstance(s, torch.Tensor) else None for s in sides]
        out = logits_of(self.head(activation.clone(), *sides))
        if any(v is not None and s._version != v for s, v in zip(sides, versions, strict=True)):
            self.clone_sides = True
            activation, sides = self.run_trunk(x)
        if out.shape != reference.shape or not torch.allclose(out, reference, atol=atol, rtol=rtol):
            gap = float((out - reference).abs().max()) if out.shape == reference.shape else float("nan")
            raise SplitError(f"the traced trunk + head at {self.layer!r} do not reproduce the model's output "
                             f"(largest difference {gap:.3g}); the network may do something torch.fx does not record")
        self.verified = True
        return activation, sides


def split_at(net: nn.Module, layer_name: str) -> Split:
    """Split `net` (an unwrapped nn.Module) at the sub-module named `layer_name` (dotted path).

    Raises SplitError when tracing fails or the layer is not one node of the graph, ConfigError
    when the model output does not depend on the layer.
    """
    modules = dict(net.named_modules())
    if not layer_name or layer_name not in modules:
        raise SplitError(f"{layer_name!r} is not a sub-module of {type(net).__name__}")
    tracer = _LayerLeafTracer(layer_name)
    try:
        graph = tracer.trace(net)
    except Exception as err:  # noqa: BLE001 - any tracing failure means "cannot split"
        raise SplitError(f"torch.fx cannot trace {type(net).__name__} ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from err
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == layer_name]
    if not calls:
        raise SplitError(f"layer {layer_name!r} is not called directly in the traced graph (it may sit "
                         "inside a module torch.fx treats as one operation)")
    if len(calls) > 1:
        raise SplitError(f"layer {layer_name!r} is called {len(calls)} times per forward pass")
    split_node = calls[0]
    downstream = _downstream(split_node)
    output = next(n for n in graph.nodes if n.op == "output")
    if output not in downstream:
        raise ConfigError(f"Layer {layer_name!r} does not feed the model output; choose a layer on the path "
                          "from the input to the logits.")
    sides = _side_inputs(graph, split_node, downstream)
    depends = _input_dependent(graph)
    root = tracer.root
    head = fx.GraphModule(root, _head_graph(graph, split_node, downstream, sides), class_name="Head")
    trunk = fx.GraphModule(root, _trunk_graph(graph, split_node, sides), class_name="Trunk")
    return Split(trunk, head, layer_name, tuple(s.name for s in sides), tuple(s in depends for s in sides))


def _downstream(start: fx.Node) -> set[fx.Node]:
    """`start` and every node that (transitively) uses it."""
    seen, stack = {start}, [start]
    while stack:
        for user in stack.pop().users:
            if user not in seen:
                seen.add(user)
                stack.append(user)
    return seen


def _side_inputs(graph: fx.Graph, split_node: fx.Node, downstream: set[fx.Node]) -> list[fx.Node]:
    """Nodes outside the head that a head node reads (get_attr nodes are copied into the head instead)."""
    sides: list[fx.Node] = []
    for node in graph.nodes:
        if node in downstream and node is not split_node:
            for arg in node.all_input_nodes:
                if arg not in downstream and arg.op != "get_attr" and arg not in sides:
                    sides.append(arg)
    return sides


def _input_dependent(graph: fx.Graph) -> set[fx.Node]:
    """Nodes whose value depends on a placeholder (the network input)."""
    out: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder" or any(a in out for a in node.all_input_nodes):
            out.add(node)
    return out


def _head_graph(graph: fx.Graph, split_node: fx.Node, downstream: set[fx.Node], sides: list[fx.Node]) -> fx.Graph:
    head = fx.Graph()
    env: dict[fx.Node, fx.Node] = {split_node: head.placeholder("activation")}
    for i, side in enumerate(sides):
        env[side] = head.placeholder(f"side_{i}_{side.name}")
    for node in graph.nodes:
        if node is split_node:
            continue
        if node.op == "get_attr" and any(u in downstream for u in node.users):
            env[node] = head.node_copy(node, env.__getitem__)
        elif node in downstream:
            if node.op == "output":
                head.output(fx.map_arg(node.args[0], env.__getitem__))
            else:
                env[node] = head.node_copy(node, env.__getitem__)
    head.lint()
    return head


def _trunk_graph(graph: fx.Graph, split_node: fx.Node, sides: list[fx.Node]) -> fx.Graph:
    """Every placeholder and every node the activation and the side inputs need, in the original order."""
    needed: set[fx.Node] = set()
    stack = [split_node, *sides]
    while stack:
        node = stack.pop()
        if node not in needed:
            needed.add(node)
            stack.extend(node.all_input_nodes)
    trunk = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in graph.nodes:
        if node.op == "placeholder" or node in needed:
            env[node] = trunk.node_copy(node, env.__getitem__)
    trunk.output((env[split_node], *(env[s] for s in sides)))
    trunk.lint()
    return trunk
