"""One clip's kernel tree and its two JSON forms.

Nested (the original code's `class_dependency_graph.json`): as deep as the depth D, keys are strings,
the last level's values are lists of ints:

    D = 1: {"c": [k, ...]}      D = 2: {"c": {"i": [j, ...], ...}}      D = 3: {"c": {"i": {"j": [k, ...]}}}

with c the class and i, j, k the level keys (the kernel index for a level of one layer; see
`vizlab.pyramid.plan` for levels that span several layers). A node before the last level that
selected nothing is `{}` (`[]` on the last but one), as in the original.

Flat (for a D3 force layout or a Sankey diagram): {"nodes": [{id, level, layer, kernel, key,
contribution, relative, parent, children}], "links": [{source, target, value, contribution}],
"levels": [{level, layers: [{layer, offset, kernels}]}], plus the run's settings}. Node 0 is the
class (its layer is the classifier, its kernel the class index, its contribution the logit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "vizlab.pyramid/1"


@dataclass
class Node:
    id: int
    level: int
    layer: str
    kernel: int
    key: int
    contribution: float | None
    relative: float | None
    parent: int | None


@dataclass
class KernelTree:
    """Nodes in level order (ids 0..M-1, node 0 = the class); `levels[d]`: the layers of level d as
    {"layer", "offset", "kernels"}; `depth`: D; `meta`: settings and names kept in the flat form."""

    nodes: list[Node]
    levels: list[list[dict[str, Any]]]
    depth: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> int:
        return self.nodes[0].kernel

    def children(self, node: int) -> list[Node]:
        return [n for n in self.nodes if n.parent == node]

    def level_sizes(self) -> list[int]:
        """Number of nodes per kernel level 1..D (0 where the pyramid stopped early)."""
        sizes = [0] * self.depth
        for n in self.nodes[1:]:
            sizes[n.level - 1] += 1
        return sizes

    # --- nested form -------------------------------------------------------------------------------
    def to_nested(self) -> dict[str, Any]:
        kids: dict[int, list[Node]] = {}
        for n in self.nodes[1:]:
            kids.setdefault(n.parent, []).append(n)

        def value(node: Node) -> Any:
            below = sorted(kids.get(node.id, []), key=lambda n: n.key)
            if node.level >= self.depth - 1:
                return [n.key for n in below]
            return {str(n.key): value(n) for n in below}

        return {str(self.target): value(self.nodes[0])}

    @classmethod
    def from_nested(cls, nested: dict[str, Any], levels: list[list[dict[str, Any]]], depth: int | None = None,
                    meta: dict[str, Any] | None = None) -> KernelTree:
        """The tree of a nested dict (contributions unknown: None); `levels` decodes keys into layers."""
        depth = len(levels) - 1 if depth is None else depth
        (root_key, below), = nested.items()
        root = Node(0, 0, levels[0][0]["layer"], int(root_key), int(root_key), None, None, None)
        nodes, queue = [root], [(root, below)]
        while queue:
            parent, value = queue.pop(0)
            keys = value if isinstance(value, list) else list(value)
            for key in sorted(int(k) for k in keys):
                layer, kernel = decode_key(levels[parent.level + 1], key)
                node = Node(len(nodes), parent.level + 1, layer, kernel, key, None, None, parent.id)
                nodes.append(node)
                if isinstance(value, dict):
                    queue.append((node, value[str(key)]))
        tree = cls(nodes, levels, depth, dict(meta or {}))
        return tree.renumbered()

    def renumbered(self) -> KernelTree:
        """The same tree with ids in level order, then parent id, then key (the canonical order)."""
        order = sorted(self.nodes, key=lambda n: (n.level, -1 if n.parent is None else self._rank(n.parent), n.key))
        new = {n.id: i for i, n in enumerate(order)}
        nodes = [Node(new[n.id], n.level, n.layer, n.kernel, n.key, n.contribution, n.relative,
                      None if n.parent is None else new[n.parent]) for n in order]
        return KernelTree(nodes, self.levels, self.depth, dict(self.meta))

    def _rank(self, node_id: int) -> tuple:
        path = []
        node = self.nodes[node_id]
        while node.parent is not None:
            path.append(node.key)
            node = self.nodes[node.parent]
        return tuple(reversed(path))

    # --- flat form ---------------------------------------------------------------------------------
    def to_flat(self) -> dict[str, Any]:
        counts: dict[int, int] = {}
        for n in self.nodes[1:]:
            counts[n.parent] = counts.get(n.parent, 0) + 1
        nodes = [{**asdict(n), "children": counts.get(n.id, 0)} for n in self.nodes]
        links = [{"source": n.parent, "target": n.id, "value": n.relative, "contribution": n.contribution}
                 for n in self.nodes[1:]]
        levels = [{"level": d, "layers": layers} for d, layers in enumerate(self.levels)]
        return {"format": FORMAT, "target": self.target, "depth": self.depth, **self.meta, "levels": levels,
                "nodes": nodes, "links": links}

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> KernelTree:
        fields = set(Node.__dataclass_fields__)
        nodes = [Node(**{k: v for k, v in n.items() if k in fields}) for n in flat["nodes"]]
        levels = [entry["layers"] for entry in sorted(flat["levels"], key=lambda e: e["level"])]
        skip = {"format", "target", "depth", "levels", "nodes", "links"}
        return cls(nodes, levels, int(flat["depth"]), {k: v for k, v in flat.items() if k not in skip})

    def structure(self) -> set[tuple[int, ...]]:
        """Every node as its path of keys from the class (for comparing trees)."""
        return {(*self._rank(n.id),) for n in self.nodes} | {()}


def decode_key(layers: list[dict[str, Any]], key: int) -> tuple[str, int]:
    """Level key → (layer name, kernel) from the level's layer table."""
    for layer in layers:
        if layer["offset"] <= key < layer["offset"] + layer["kernels"]:
            return layer["layer"], key - layer["offset"]
    raise ValueError(f"key {key} is outside every layer of its level")
