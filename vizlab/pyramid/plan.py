"""From a traced `Graph` to the pyramid's levels: each parent's true input and its candidate kernels.

True input of a conv (or of the classifier). Walking back from the tensor the layer reads:
- through channel-preserving ops (BN, ReLU, pooling, padding, ...): channel j stays channel j;
- through a channel concatenation: channel j belongs to the piece that holds it, at its offset
  (I3D's Inception branches);
- through a sum (residual shortcut, MFNet's `x + h`): channel j comes from every summand's channel j;
  the contribution is shared among them in proportion to their mean magnitudes there (see `Factor`);
- until a conv's output: that conv's kernels are the candidates. The model input and opaque ops end
  a path without candidates.

Levels. Level 0 is the class (its "layer" is the classifier); level d + 1 holds the kernels that feed
the level-d layers. A level can mix several layers (the convs summed by residual shortcuts, or the
branches of a concatenation); `LevelTable` numbers their kernels one after the other in execution
order, so a level's `key` is unique — for a plain chain of convs it is just the kernel index, as in
the original code's JSON.

`strict_original=True` builds the original's chain instead: level d is the d-th conv from the end in
execution order, its input assumed to be the previous conv's (raw) output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vizlab.errors import ConfigError
from vizlab.pyramid.graph import Graph, Op, Operand

Slot = tuple[int, Operand | None]
# ops allowed between the classifier and the logits: linear in the classifier's output
LINEAR_HEAD = frozenset({"mean", "sum", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
                         "adaptive_avg_pool2d", "adaptive_avg_pool3d", "flatten", "view", "reshape", "squeeze",
                         "unsqueeze", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
                         "feature_alpha_dropout", "contiguous", "clone", "to", "float", "__getitem__", "mul", "div",
                         "__mul__", "__rmul__", "__truediv__", "true_divide"})  # (call index, operand read before the call, or None: the call's result)


@dataclass(frozen=True)
class Factor:
    """A sum on the path from a source conv to the parent's input: the path enters the sum (call
    `add`) through operand `slot`; source kernel j is the sum's channel j + `shift`. The share of
    that kernel is |mean of its operand| / Σ |mean of every operand| at that channel."""

    add: int
    slot: int
    shift: int


@dataclass
class Source:
    """Channels [start, start + channels) of a parent's input come from `conv`'s kernels 0.. (conv:
    call index; None for the model input or an opaque op), along one or more paths (`chains`)."""

    conv: int | None
    start: int
    channels: int
    chains: list[tuple[Factor, ...]] = field(default_factory=list)


def sources(graph: Graph, node: int) -> list[Source]:
    """Where the channels of tensor `node` come from (see the module docstring), merged per (conv, start)
    and sorted by start, then conv."""
    found: dict[tuple[int | None, int, int], Source] = {}
    stack: list[tuple[int, int, tuple[tuple[int, int, int], ...]]] = [(node, 0, ())]
    while stack:
        nid, offset, sums = stack.pop()
        op = graph.producer(nid)
        if op is not None and op.kind == "pass" and op.inputs:
            stack.append((op.inputs[0].node, offset, sums))
            continue
        if op is not None and op.kind == "cat":
            inner = offset
            for operand in op.inputs:
                stack.append((operand.node, inner, sums))
                inner += graph.shape(operand.node)[1]
            continue
        if op is not None and op.kind == "add":
            for slot, operand in enumerate(op.inputs):
                stack.append((operand.node, offset, (*sums, (op.index, slot, offset))))
            continue
        conv = op.index if op is not None and op.kind == "conv" else None
        channels = graph.shape(nid)[1]
        chain = tuple(Factor(add, slot, offset - at) for add, slot, at in sums)
        found.setdefault((conv, offset, channels), Source(conv, offset, channels)).chains.append(chain)
    return sorted(found.values(), key=lambda s: (s.start, -1 if s.conv is None else s.conv))


@dataclass
class Head:
    """The classifier (a linear layer or a conv, usually 1×1) and the feature map it pools.

    op: the classifier call. a_slot: its input (the pooled features, (N, M) or (N, M, 1, ...)).
    feature_node / map_slot: the last full-size feature map before global pooling (N, M, *S')."""

    op: Op
    a_slot: Slot
    feature_node: int
    map_slot: Slot


def find_head(graph: Graph) -> Head:
    """The classifier on the path to the logits (through channel-preserving ops only) and the feature
    map it pools; ConfigError if the logits do not come from a linear or conv classifier."""
    node = graph.output_node
    op = graph.producer(node)
    while op is not None and op.kind == "pass" and op.func in LINEAR_HEAD:
        node = op.inputs[0].node
        op = graph.producer(node)
    if op is None or op.kind not in ("linear", "conv"):
        raise ConfigError("The pyramid needs the logits to come from a classifier layer (nn.Linear or a 1×1 conv) "
                          "on globally pooled features, followed by linear ops only (pooling, flatten, dropout); "
                          f"this network's logits come from {'the input' if op is None else repr(op.func)}.")
    slot = (op.index, op.inputs[0])
    feature, map_slot = op.inputs[0].node, slot
    node = feature
    inner_op = graph.producer(node)
    while inner_op is not None and inner_op.kind == "pass":
        inner = inner_op.inputs[0].node
        larger = _per_channel(graph.shape(inner)) > _per_channel(graph.shape(node))
        if larger or (len(graph.shape(feature)) < 3 <= len(graph.shape(inner))):
            feature, map_slot = inner, (inner_op.index, inner_op.inputs[0])
        node = inner
        inner_op = graph.producer(node)
    if len(graph.shape(feature)) < 3:
        raise ConfigError(f"The pyramid needs the classifier ({op.module}) to read globally pooled feature maps "
                          "(N, C, *S); this network's classifier reads a vector made by another layer "
                          "(e.g. a VGG-style fully connected head), which has no kernels to trace.")
    return Head(op, slot, feature, map_slot)


def _per_channel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape[2:]:
        n *= s
    return n


@dataclass
class LevelLayer:
    """One layer of a level: its conv call, dotted name, first key and number of kernels."""

    op: int
    name: str
    offset: int
    kernels: int


@dataclass
class Candidates:
    """The kernels a parent layer (classifier or conv) can select at the next level.

    Entry e stands for kernel `kernel[e]` of layer `layer[e]` (a conv call index) with level key
    `key[e]`; it feeds input channel `x_index[e]` of the parent. `a_slot`: where the mean of the
    parent's input is read (None: not used — the strict class level); `map_slot`: the input maps
    (for tubes). `sources`: the conv sources, in entry order (for the shares)."""

    op: int
    level: int
    a_slot: Slot | None
    map_slot: Slot
    sources: list[Source]
    x_index: torch.Tensor
    layer: torch.Tensor
    kernel: torch.Tensor
    key: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.x_index.numel())


@dataclass
class Plan:
    """Everything a recording forward must capture and the back-step needs, for one depth.

    levels[d] (d = 0..D): the layers of level d (level 0: the classifier). candidates[(d, op)]: the
    candidate table of parent `op` at level d (d < D)."""

    graph: Graph
    head: Head
    depth: int
    strict: bool
    levels: list[list[LevelLayer]]
    candidates: dict[tuple[int, int], Candidates]
    kbar: dict[int, tuple[int, torch.Tensor]] = field(default_factory=dict)  # op → (weight version, k̄)

    def record_slots(self) -> dict[int, list[tuple[Operand | None, bool]]]:
        """call index → [(slot, keep_map)] for the `Recorder`."""
        wanted: dict[Slot, bool] = {}
        for cand in self.candidates.values():
            if cand.a_slot is not None:
                wanted[cand.a_slot] = wanted.get(cand.a_slot, False)
            wanted[cand.map_slot] = True
            for add in self.sums(cand):
                for operand in self.graph.ops[add].inputs:
                    wanted.setdefault((add, operand), False)
        out: dict[int, list[tuple[Operand | None, bool]]] = {}
        for (index, operand), keep in wanted.items():
            out.setdefault(index, []).append((operand, keep))
        return out

    @staticmethod
    def sums(cand: Candidates) -> set[int]:
        return {f.add for s in cand.sources for chain in s.chains for f in chain}

    def expected_calls(self) -> dict[int, str]:
        return {index: self.graph.ops[index].func for index in self.record_slots()}


def conv_in_channels(op: Op) -> int:
    return op.weight.shape[1] * op.groups


def _table(level: int, parent: int, a_slot: Slot | None, map_slot: Slot, srcs: list[Source],
           layer_offsets: dict[int, int]) -> Candidates:
    conv_sources = [s for s in srcs if s.conv is not None]
    x, layer, kernel, key = [], [], [], []
    for s in conv_sources:
        k = torch.arange(s.channels)
        x.append(k + s.start)
        layer.append(torch.full((s.channels,), s.conv))
        kernel.append(k)
        key.append(k + layer_offsets[s.conv])
    return Candidates(parent, level, a_slot, map_slot, conv_sources, _cat(x), _cat(layer), _cat(kernel), _cat(key))


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def _level(graph: Graph, ops: list[int]) -> tuple[list[LevelLayer], dict[int, int]]:
    layers, offsets, offset = [], {}, 0
    for index in sorted(set(ops)):
        op = graph.ops[index]
        layers.append(LevelLayer(index, op.module or op.func, offset, op.channels))
        offsets[index] = offset
        offset += op.channels
    return layers, offsets


def build_plan(graph: Graph, depth: int, strict: bool = False) -> Plan:
    """The levels 0..depth of the pyramid on `graph` (traced) and every parent's candidates."""
    head = find_head(graph)
    classifier = LevelLayer(head.op.index, head.op.module or head.op.func, 0, head.op.channels)
    if strict:
        return _strict_plan(graph, head, classifier, depth)
    levels: list[list[LevelLayer]] = [[classifier]]
    candidates: dict[tuple[int, int], Candidates] = {}
    parents: list[tuple[int, int, Slot | None, Slot]] = [(head.op.index, head.feature_node, head.a_slot,
                                                          head.map_slot)]
    for d in range(1, depth + 1):
        found = [(p, sources(graph, node), a_slot, map_slot) for p, node, a_slot, map_slot in parents]
        layers, offsets = _level(graph, [s.conv for _, srcs, _, _ in found for s in srcs if s.conv is not None])
        for p, srcs, a_slot, map_slot in found:
            candidates[(d - 1, p)] = _table(d - 1, p, a_slot, map_slot, srcs, offsets)
        levels.append(layers)
        parents = [(layer.op, graph.ops[layer.op].inputs[0].node, (layer.op, graph.ops[layer.op].inputs[0]),
                    (layer.op, graph.ops[layer.op].inputs[0])) for layer in layers]
        if not layers:
            break
    return Plan(graph, head, depth, False, levels, candidates)


def _strict_plan(graph: Graph, head: Head, classifier: LevelLayer, depth: int) -> Plan:
    """The original's chain: level d = the d-th conv from the end; its input = the previous conv's output."""
    chain = [op for op in graph.convs() if op.index != head.op.index]
    if not chain:
        raise ConfigError("strict_original needs at least one convolution before the classifier.")
    levels: list[list[LevelLayer]] = [[classifier]]
    candidates: dict[tuple[int, int], Candidates] = {}
    width = head.op.weight.shape[1] * head.op.groups if head.op.kind == "conv" else head.op.weight.shape[1]
    parent, parent_in = head.op, width
    for d in range(1, min(depth, len(chain)) + 1):
        source = chain[-d]
        if source.channels != parent_in:
            raise ConfigError(
                f"strict_original's chain assumption does not fit this network: {parent.module or parent.func} "
                f"reads {parent_in} channels but the conv before it in execution order ({source.module}) makes "
                f"{source.channels}. Use strict_original=false (each layer's true input, traced).")
        layer = LevelLayer(source.index, source.module or source.func, 0, source.channels)
        out_slot: Slot = (source.index, None)
        src = Source(source.index, 0, source.channels, [()])
        a_slot = None if d == 1 else out_slot
        candidates[(d - 1, parent.index)] = _table(d - 1, parent.index, a_slot, out_slot, [src], {source.index: 0})
        levels.append([layer])
        parent, parent_in = source, conv_in_channels(source)
    return Plan(graph, head, depth, True, levels, candidates)
