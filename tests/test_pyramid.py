"""Class Feature Pyramids: hand-computed selections on tiny networks with known weights (fixed and
strict_original rules), grouped and depth-wise convs, residual and concatenating blocks traced to
their true inputs, the JSON forms, tubes, errors and the method contract."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import vizlab
from vizlab.errors import ConfigError, InputError
from vizlab.methods import build, method_parameters
from vizlab.pyramid import ClassFeaturePyramid, KernelTree, build_plan, sources, trace
from vizlab.pyramid.backstep import Context

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def window_pattern(shape: tuple[int, ...]) -> torch.Tensor:
    """A non-constant kernel window with mean exactly 1 (1 ± 0.5, one entry 1)."""
    n = int(torch.tensor(shape).prod())
    signs = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(n - n % 2)] + [0.0] * (n % 2))
    return (1 + 0.5 * signs).view(shape)


class HandNet(nn.Module):
    """conv1 (1×1×1, 2 → 3) → ReLU → conv2 (3×3×3, no padding, 3 → 2) → ReLU → GAP → fc (2 → 2).

    With the constant clip x = (1, 2): conv1's raw output is W1·x = (1, 2, −1), its ReLU (1, 2, 0);
    conv2's kernels are w2[i, j] × a window of mean 1, so conv2 = 27·w2·(1, 2, 0) = (24.3, −2.7) and
    the pooled features v = (24.3, 0); logits = W3·v = (24.3, −24.3)."""

    W1 = [[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]
    W2 = [[0.5, 0.2, -0.1], [-0.3, 0.1, 0.5]]
    W3 = [[1.0, 0.9], [-1.0, 2.0]]

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(2, 3, 1, bias=False)
        self.conv2 = nn.Conv3d(3, 2, 3, bias=False)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor(self.W1).view(3, 2, 1, 1, 1))
            self.conv2.weight.copy_(torch.tensor(self.W2)[:, :, None, None, None] * window_pattern((3, 3, 3)))
            self.fc.weight.copy_(torch.tensor(self.W3))
            self.fc.bias.zero_()

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3, 4)))


def constant_clip(values, size=(3, 5, 5)) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1, 1).expand(1, len(values), *size).contiguous()


def flat_nodes(tree: KernelTree) -> list[tuple]:
    return [(n.level, n.layer, n.kernel, n.parent, round(n.contribution, 4), round(n.relative, 4)) for n in tree.nodes]


def test_hand_computed_selection_and_contributions():
    """Fixed rule, θ = 0.6, D = 2, class 0. Class level p_i = W3[0, i]·v_i = (24.3, 0) → r = (1, 0): kernel 0.
    Back-step from conv2 kernel 0: p_j = k̄[0, j]·ā_j = (0.5·1, 0.2·2, −0.1·0) = (0.5, 0.4, 0) → r = (1, 0.8, 0):
    kernels 0 and 1 of conv1 (ā is conv2's actual input, after the ReLU)."""
    net = HandNet().eval()
    x = constant_clip([1.0, 2.0])
    result = ClassFeaturePyramid(net, threshold=0.6, depth=2)(x, 0)
    tree = result.tree(0)
    assert tree.to_nested() == {"0": {"0": [0, 1]}}
    assert flat_nodes(tree) == [(0, "fc", 0, None, 24.3, 1.0), (1, "conv2", 0, 0, 24.3, 1.0),
                                (2, "conv1", 0, 1, 0.5, 1.0), (2, "conv1", 1, 1, 0.4, 0.8)]
    # class 1 gets no positive contribution: nothing is selected, the class tube is empty
    none = ClassFeaturePyramid(net, threshold=0.6, depth=2)(x, 1)
    assert none.tree(0).to_nested() == {"1": {}} and float(none.saliency.abs().max()) == 0
    # depth 1 stops at the class level; depth 3 ends where the network does (conv1 reads the input)
    assert ClassFeaturePyramid(net, threshold=0.6, depth=1)(x, 0).tree(0).to_nested() == {"0": [0]}
    deep = ClassFeaturePyramid(net, threshold=0.6, depth=3)(x, 0).tree(0)
    assert deep.to_nested() == {"0": {"0": {"0": [], "1": []}}} and deep.level_sizes() == [1, 2, 0]


def test_strict_original_reproduces_the_published_rule():
    """strict_original, θ = 0.6. Class level: minmax of the whole W3 (min −1, max 2), row 0 → (2/3, 1.9/3):
    both kernels, no activations used. Back-step with conv1's raw output (1, 2, −1):
    kernel 0: p = (0.5, 0.4, 0.1), Σ = 1, minmax (1, 0.75, 0) → {0, 1};
    kernel 1: p = (−0.3, 0.2, −0.5), Σ = −0.6 flips the signs → (0.5, −1/3, 5/6) → minmax (5/7, 0, 1) → {0, 2}
    (the two channels that contribute negatively: the original's sign bug)."""
    net = HandNet().eval()
    result = ClassFeaturePyramid(net, threshold=0.6, depth=2, strict_original=True)(constant_clip([1.0, 2.0]), 0)
    tree = result.tree(0)
    assert tree.to_nested() == {"0": {"0": [0, 1], "1": [0, 2]}}
    got = {(n.level, n.parent, n.kernel): (n.contribution, n.relative) for n in tree.nodes[1:]}
    assert got[(1, 0, 0)] == pytest.approx((1.0, 2 / 3)) and got[(1, 0, 1)] == pytest.approx((0.9, 1.9 / 3))
    assert got[(2, 1, 0)] == pytest.approx((0.5, 1.0)) and got[(2, 1, 1)] == pytest.approx((0.4, 0.75))
    assert got[(2, 2, 0)] == pytest.approx((-0.3, 5 / 7)) and got[(2, 2, 2)] == pytest.approx((-0.5, 1.0))
    assert result.settings["weighted"] is False  # the original's plain tube sum


class GroupedNet(nn.Module):
    """stem (identity 1×1) → ReLU → grouped (g = 2, 4 → 4, 1×1) → ReLU → depth-wise (g = 4, 3×3 ones, pad 1)
    → ReLU → GAP → fc. On the constant 6×6 input (1, 2, 100, 50), group 1's inputs are far larger than
    group 0's. grouped = (2, 2.3, 70, 105); the depth-wise layer's mean is 256/36 of its input (window
    coverage of a 6×6 map with padding 1), and fc row 0 = 1 / grouped, so every class-level
    contribution is 256/36 and all four depth-wise kernels are selected."""

    GROUPED = [[1.0, 0.5], [0.3, 1.0], [0.2, 1.0], [1.0, 0.1]]  # out 0, 1 read inputs 0, 1; out 2, 3 inputs 2, 3

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, 4, 1, bias=False)
        self.grouped = nn.Conv2d(4, 4, 1, groups=2, bias=False)
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.stem.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
            self.grouped.weight.copy_(torch.tensor(self.GROUPED).view(4, 2, 1, 1))
            self.depthwise.weight.fill_(1.0)
            self.fc.weight.zero_()
            self.fc.weight[0] = 1 / torch.tensor([2.0, 2.3, 70.0, 105.0])
            self.fc.bias.zero_()

    def forward(self, x):
        h = torch.relu(self.depthwise(torch.relu(self.grouped(torch.relu(self.stem(x))))))
        return self.fc(h.mean(dim=(2, 3)))


GROUPED_INPUT = torch.tensor([1.0, 2.0, 100.0, 50.0]).view(1, 4, 1, 1).expand(1, 4, 6, 6).contiguous()


def test_grouped_and_depthwise_convs_select_only_inputs_of_their_group():
    """θ = 0.6, D = 3. Depth-wise kernel i reads channel i only: its child is grouped kernel i (p = 1 × input).
    Grouped kernel 0, weights (1, 0.5) on inputs 0, 1: p = (1, 1, 0, 0) → {0, 1}; kernel 1: (0.3, 2, 0, 0) → {1};
    kernel 2, (0.2, 1) on inputs 2, 3: p = (0, 0, 20, 50) → r (0, 0, 0.4, 1) → {3}; kernel 3: (0, 0, 100, 5) → {2}."""
    tree = ClassFeaturePyramid(GroupedNet().eval(), threshold=0.6, depth=3)(GROUPED_INPUT, 0).tree(0)
    assert tree.to_nested() == {"0": {"0": {"0": [0, 1]}, "1": {"1": [1]}, "2": {"2": [3]}, "3": {"3": [2]}}}
    contributions = {(n.level, n.layer, tree.nodes[n.parent].kernel, n.kernel): n.contribution for n in tree.nodes[1:]}
    assert contributions == pytest.approx({
        **{(1, "depthwise", 0, k): 256 / 36 for k in range(4)},
        (2, "grouped", 0, 0): 2.0, (2, "grouped", 1, 1): 2.3, (2, "grouped", 2, 2): 70.0, (2, "grouped", 3, 3): 105.0,
        (3, "stem", 0, 0): 1.0, (3, "stem", 0, 1): 1.0, (3, "stem", 1, 1): 2.0, (3, "stem", 2, 3): 50.0,
        (3, "stem", 3, 2): 100.0})


def test_strict_original_inflates_grouped_kernels_across_groups():
    """The original repeats each of a kernel's C_in/g weights g times over all inputs. Class level: minmax of
    fc's weights (min 0, max 0.5) keeps depth-wise kernels 0 and 1 (1, 0.87). Depth-wise kernel 0 then
    'reads' all four grouped outputs, (2, 2.3, 70, 105) → minmax (0, 0.003, 0.66, 1) → {2, 3}: channels of
    other groups. Grouped 2, weights inflated to (0.2, 0.2, 1, 1), on the stem's (1, 2, 100, 50) →
    (0.2, 0.4, 100, 50) → {2}; grouped 3, (1, 1, 0.1, 0.1) → (1, 2, 10, 5) → {2}."""
    tree = ClassFeaturePyramid(GroupedNet().eval(), threshold=0.6, depth=3, strict_original=True)(GROUPED_INPUT,
                                                                                                   0).tree(0)
    assert tree.to_nested() == {"0": {"0": {"2": [2], "3": [2]}, "1": {"2": [2], "3": [2]}}}


class ResidualNet(nn.Module):
    """stem → ReLU = y; h = conv2(ReLU(conv1(y))); out = ReLU(h + y) (identity shortcut) or
    ReLU(h + proj(y)) (projection shortcut) → GAP → fc."""

    def __init__(self, projection: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 4, 1)
        self.conv1 = nn.Conv3d(4, 4, 3, padding=1)
        self.conv2 = nn.Conv3d(4, 4, 3, padding=1)
        self.proj = nn.Conv3d(4, 4, 1) if projection else None
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        h = self.conv2(torch.relu(self.conv1(y)))
        return self.fc(torch.relu(h + (y if self.proj is None else self.proj(y))).mean(dim=(2, 3, 4)))


def conv_named(graph, name):
    return next(op for op in graph.convs() if op.module == name)


@pytest.mark.parametrize("projection", [False, True])
def test_residual_block_is_traced_to_both_summands(projection):
    """The classifier's input relu(h + y) comes from conv2 (the residual branch) and from the stem through the
    identity shortcut (or from proj): both are level-1 layers, each kernel's share of channel j is
    |mean of its summand| / (|mean h_j| + |mean shortcut_j|) (checked against the summands computed by hand),
    and conv1 (conv2's true input) is the level below conv2."""
    torch.manual_seed(1)
    net = ResidualNet(projection).eval()
    x = torch.randn(2, 3, 4, 8, 8)
    graph = trace(net, x[:1])
    plan = build_plan(graph, depth=2)
    shortcut = "proj" if projection else "stem"
    assert sorted(layer.name for layer in plan.levels[1]) == sorted(["conv2", shortcut])
    feature_sources = sources(graph, plan.head.feature_node)
    assert sorted((graph.ops[s.conv].module, s.start, s.channels) for s in feature_sources) == sorted(
        [("conv2", 0, 4), (shortcut, 0, 4)])
    (add,) = {f.add for s in feature_sources for chain in s.chains for f in chain}
    assert graph.ops[add].kind == "add"
    level2 = {layer.name for layer in plan.levels[2]}
    assert "conv1" in level2 and (("stem" in level2) == projection)

    pyramid = ClassFeaturePyramid(net, threshold=0.5, depth=2)
    plan, _ = pyramid.plan_for(x)
    logits, gaps, _ = pyramid.record(plan, x)
    cand = plan.candidates[(0, plan.head.op.index)]
    share = Context(plan, gaps, logits).shares(cand)
    with torch.no_grad():
        y = torch.relu(net.stem(x))
        h = net.conv2(torch.relu(net.conv1(y))).mean(dim=(2, 3, 4)).abs()
        s = (y if net.proj is None else net.proj(y)).mean(dim=(2, 3, 4)).abs()
    layers = [plan.graph.ops[int(op)].module for op in cand.layer]
    expected = torch.stack([(h if name == "conv2" else s)[:, k] / (h[:, k] + s[:, k])
                            for name, k in zip(layers, cand.kernel.tolist(), strict=True)], 1)
    assert torch.allclose(share, expected, atol=1e-6)
    assert torch.allclose(share.view(2, 2, 4).sum(1), torch.ones(2, 4))  # the shares of a channel add up to 1


class TwoBranchNet(nn.Module):
    """stem → ReLU = y; a = conv_a(y) (2 ch); b = conv_b2(ReLU(conv_b1(y))) (3 ch); ReLU(cat(a, b)) → GAP → fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.conv_a = nn.Conv2d(4, 2, 1)
        self.conv_b1 = nn.Conv2d(4, 3, 3, padding=1)
        self.conv_b2 = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        out = torch.cat([self.conv_a(y), self.conv_b2(torch.relu(self.conv_b1(y)))], dim=1)
        return self.fc(torch.relu(out).mean(dim=(2, 3)))


def test_concatenation_is_traced_to_its_branches():
    """Channels 0-1 of the concatenation are conv_a's kernels 0-1, channels 2-4 conv_b2's kernels 0-2: the level-1
    keys are the concatenation's channel indices (the original's I3D bookkeeping); conv_b2's true input is
    conv_b1, conv_a's the stem; the class-level contributions are W[c, x]·v_x over the concatenation."""
    torch.manual_seed(2)
    net = TwoBranchNet().eval()
    x = torch.randn(1, 3, 10, 10)
    result = ClassFeaturePyramid(net, threshold=0.05, depth=2)(x, 1)
    plan = result.plan
    assert [(layer.name, layer.offset, layer.kernels) for layer in plan.levels[1]] == [("conv_a", 0, 2),
                                                                                      ("conv_b2", 2, 3)]
    assert [(layer.name, layer.offset) for layer in plan.levels[2]] == [("stem", 0), ("conv_b1", 4)]
    cand = plan.candidates[(0, plan.head.op.index)]
    assert cand.x_index.tolist() == [0, 1, 2, 3, 4] and cand.kernel.tolist() == [0, 1, 0, 1, 2]
    with torch.no_grad():
        y = torch.relu(net.stem(x))
        v = torch.relu(torch.cat([net.conv_a(y), net.conv_b2(torch.relu(net.conv_b1(y)))], 1)).mean(dim=(2, 3))[0]
    p = net.fc.weight[1].detach() * v
    tree = result.tree(0)
    level1 = {n.key: n for n in tree.nodes if n.level == 1}
    assert set(level1) == set((p.clamp_min(0) / p.max() >= 0.05).nonzero()[:, 0].tolist())
    for key, node in level1.items():
        assert node.contribution == pytest.approx(float(p[key]), rel=1e-5)
        assert node.layer == ("conv_a" if key < 2 else "conv_b2") and node.kernel == (key if key < 2 else key - 2)
    for node in tree.nodes:
        if node.level == 2:
            assert node.layer == ("stem" if tree.nodes[node.parent].layer == "conv_a" else "conv_b1")


def test_strict_chain_that_does_not_fit_is_a_clear_error():
    with pytest.raises(ConfigError, match="chain assumption does not fit.*strict_original=false"):
        ClassFeaturePyramid(TwoBranchNet().eval(), strict_original=True)(torch.randn(1, 3, 8, 8))


def test_mfnet_units_are_traced_to_x_plus_h_and_grouped_conv_m2():
    """MFNet's conv_m1 reads BN-ReLU(x + h): its sources are the multiplexer's conv_i2 (h) and the previous
    unit's output convs (x = conv_m2 + the shortcut conv_w1 in a stage's first unit); conv_m2 is grouped (g = 16)
    except in a stage's first unit, and the back-step from a grouped conv_m2 kernel selects conv_m1 kernels of
    its own fibre only."""
    model = vizlab.load_model("mfnet", num_classes=5)
    x = torch.randn(1, 3, 8, 32, 32)
    result = ClassFeaturePyramid(model, threshold=0.3, depth=3)(x)
    graph = result.plan.graph
    m1 = conv_named(graph, "conv5.B02.conv_m1.conv")
    found = sorted(graph.ops[s.conv].module for s in sources(graph, m1.inputs[0].node))
    assert found == ["conv5.B01.conv_m2.conv", "conv5.B01.conv_w1.conv", "conv5.B02.conv_i2.conv"]
    assert conv_named(graph, "conv5.B02.conv_m2.conv").groups == 16
    assert conv_named(graph, "conv5.B01.conv_m2.conv").groups == 1
    from vizlab.pyramid.backstep import contributions

    plan = result.plan
    m2 = conv_named(graph, "conv5.B03.conv_m2.conv")
    cand = plan.candidates[next(key for key in plan.candidates if key[1] == m2.index)]
    assert {graph.ops[int(op)].module for op in cand.layer} == {"conv5.B03.conv_m1.conv"}
    _, gaps, _ = ClassFeaturePyramid(model, threshold=0.3, depth=3).record(plan, x)
    kernels = torch.arange(768)
    p, r = contributions(Context(plan, gaps, result.logits), cand, torch.zeros(768, dtype=torch.long), kernels)
    fibre = (kernels // 48)[:, None] == (cand.kernel // 48)[None, :]
    assert (p[~fibre] == 0).all() and (p[fibre] != 0).float().mean() > 0.5  # (dead ReLU inputs give 0)
    assert (r[~fibre] == 0).all()


def test_i3d_class_level_spans_the_four_mixed_5c_branches():
    """I3D's classifier (a 1×1×1 conv on pooled features) reads Mixed_5c's concatenation: level 1 holds its four
    branch outputs at the concatenation's offsets; level 2 the 1×1×1 units inside Mixed_5c and Mixed_5b's outputs."""
    model = vizlab.load_model("i3d", num_classes=5)
    result = ClassFeaturePyramid(model)(torch.randn(1, 3, 8, 32, 32))
    assert result.settings["threshold"] == 0.65 and result.settings["depth"] == 2  # the README's row
    assert [(layer.name, layer.offset) for layer in result.plan.levels[1]] == [
        ("Mixed_5c.b0.conv3d", 0), ("Mixed_5c.b1b.conv3d", 384), ("Mixed_5c.b2b.conv3d", 768),
        ("Mixed_5c.b3b.conv3d", 896)]
    assert {layer.name for layer in result.plan.levels[2]} >= {"Mixed_5c.b1a.conv3d", "Mixed_5c.b2a.conv3d",
                                                               "Mixed_5b.b0.conv3d", "Mixed_5b.b3b.conv3d"}
    assert result.saliency.shape == (1, 8, 32, 32)


# ----------------------------------------------------------------------------- JSON, tubes, contract
def test_json_round_trip_and_both_forms_agree(tiny3d):
    torch.manual_seed(4)
    result = ClassFeaturePyramid(ResidualNet(projection=True).eval(), threshold=0.3, depth=3)(
        torch.randn(2, 3, 4, 8, 8))
    for clip in range(2):
        tree = result.tree(clip)
        nested, flat = tree.to_nested(), tree.to_flat()
        nested_json, flat_json = json.loads(json.dumps(nested)), json.loads(json.dumps(flat))
        assert nested_json == nested and list(nested) == [str(tree.target)]
        back = KernelTree.from_flat(flat_json)
        assert back.to_flat() == flat and back.to_nested() == nested
        decoded = KernelTree.from_nested(nested_json, back.levels)
        assert decoded.structure() == tree.structure()
        assert [(n.level, n.layer, n.kernel, n.key, n.parent) for n in decoded.nodes] == [
            (n.level, n.layer, n.kernel, n.key, n.parent) for n in tree.nodes]
        assert len(flat["links"]) == len(flat["nodes"]) - 1
        assert all(flat["nodes"][link["target"]]["parent"] == link["source"] for link in flat["links"])
        leaves = [n for n in tree.nodes if n.level == tree.depth]

        def last_lists(value):
            return [k for v in value.values() for k in last_lists(v)] if isinstance(value, dict) else list(value)

        assert sorted(last_lists(nested[str(tree.target)])) == sorted(n.key for n in leaves)


def test_tubes_have_the_clip_shape_and_the_weighted_tube_is_the_contribution_map(tiny3d):
    """Every tube is (T, H, W) in [0, 1]; the class tube is the method's saliency; before rectification the
    weighted class tube's mean equals the sum of the selected class-level contributions (chain network)."""
    torch.manual_seed(5)
    x = torch.randn(2, 3, 4, 16, 16)
    result = ClassFeaturePyramid(tiny3d, threshold=0.3, depth=2)(x, [1, 3])
    for clip in range(2):
        tree = result.tree(clip)
        ids = [n.id for n in tree.nodes if result.has_tube(clip, n.id)]
        tubes = result.tubes(clip, ids)
        assert ids[0] == 0 and tubes.shape == (len(ids), 4, 16, 16)
        assert tubes.min() >= 0 and torch.allclose(tubes.flatten(1).amax(1), torch.ones(len(ids)))
        assert torch.allclose(tubes[0], result.saliency[clip])
        selected = sum(n.contribution for n in tree.children(0))
        assert float(result.raw[clip].mean()) == pytest.approx(selected, rel=1e-4)
        leaf = next(n for n in tree.nodes if n.level == 2)
        with pytest.raises(ConfigError, match="no children"):
            result.tubes(clip, [leaf.id])


def test_top_k_keeps_the_strongest_children_of_each_parent(tiny3d):
    x = torch.randn(1, 3, 4, 16, 16)
    full = ClassFeaturePyramid(tiny3d, threshold=0.05, depth=2)(x, 0).tree(0)
    top = ClassFeaturePyramid(tiny3d, threshold=0.05, depth=2, top_k=[1, 2])(x, 0).tree(0)
    assert len(top.children(0)) == 1 and top.children(0)[0].kernel == max(
        full.children(0), key=lambda n: n.relative).kernel
    for node in top.children(0):
        kids = sorted((n.relative for n in top.children(node.id)), reverse=True)
        twin = next(n for n in full.children(0) if n.kernel == node.kernel)
        assert kids == sorted((n.relative for n in full.children(twin.id)), reverse=True)[:2]


@pytest.mark.parametrize(("options", "match"), [
    ({"threshold": 0}, "threshold must be a number in"), ({"threshold": 1.5}, "threshold must be a number in"),
    ({"threshold": "high"}, "threshold must be a number or null; got 'high'"), ({"depth": 0}, "depth must be an integer"),
    ({"top_k": 0}, "top_k must be"), ({"depth": 2, "top_k": [1, 2, 3]}, "one entry per level"),
    ({"strict_original": "yes"}, "strict_original must be"),
])
def test_bad_options_are_config_errors(options, match, tiny2d):
    with pytest.raises(ConfigError, match=match):
        build("pyramid", tiny2d, **options)


def test_bad_input_and_non_classifier_heads(tiny2d):
    with pytest.raises(InputError, match="out of range"):
        vizlab.explain(tiny2d, torch.randn(1, 3, 16, 16), 9, method="pyramid")

    class NoClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return torch.relu(self.conv(x)).mean(dim=(2, 3))

    with pytest.raises(ConfigError, match="classifier layer"):
        vizlab.explain(NoClassifier(), torch.randn(1, 3, 8, 8), method="pyramid")


def test_method_config_matches_the_class_and_network_defaults():
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "method" / "pyramid.yaml"))
    assert cfg.pop("name") == "pyramid" and cfg == method_parameters("pyramid")
    assert ClassFeaturePyramid(TwoBranchNet()).threshold == 0.6 and ClassFeaturePyramid(TwoBranchNet()).depth == 3
