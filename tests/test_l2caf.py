"""L2-CAF: fast (fx split / replay) equals slow, the constraints' scales, the objectives, batching
of samples × targets, Gaussian filters on any map, a plain re-statement of the PyTorch port's loop,
ground truth on the synthetic models, and the explain loop end to end (several targets per sample)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import PYTHON, ROOT, TinyCNN, run_cli, synthetic_model
from torch import nn

import vizlab
from vizlab.errors import ConfigError, InputError, LayerNotFoundError
from vizlab.methods import build
from vizlab.methods.caf_filter import ConstrainedFilters
from vizlab.methods.targets import check_multi_target, repeat_for_targets, top_k_targets

QUIET = {"progress": False}


# --- small networks with the structures a split must handle -----------------------------------------
class Residual(nn.Module):
    """stem → [conv1 → ReLU → conv2] + shortcut → ReLU → GAP → fc. Splitting at block_conv1 leaves
    the shortcut (computed before the layer) as a side input of the head."""

    def __init__(self, classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU())
        self.block_conv1 = nn.Conv2d(width, width, 3, 1, 1)
        self.block_conv2 = nn.Conv2d(width, width, 3, 1, 1)
        self.fc = nn.Linear(width, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return F.relu(self.block_conv2(F.relu(self.block_conv1(s))) + s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class ShapeCheck(Residual):
    """Residual with Python control flow on the input's shape: torch.fx cannot trace it (replay engine)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 4:
            raise ValueError("too small")
        return super().forward(x)


class Counter(nn.Module):
    """Adds how often it ran: not deterministic, so replaying it from a cache is wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x + 0.01 * self.calls


class Unsplittable(ShapeCheck):
    """Neither fx (control flow) nor replay (a stateful module before the layer) reproduces it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), Counter())


class BatchFromInput(nn.Module):
    """The head reshapes with the batch size taken from the input, a side input that is no (N, ...)
    tensor: the head must always see the whole batch."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU())
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return self.fc(self.features(x).mean(dim=(2, 3)).view(n, -1))


def net(cls, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return cls(**kw).eval()


def head_of_tiny(model: TinyCNN, a: torch.Tensor) -> torch.Tensor:
    """Ψ of TinyCNN at its `features` layer, written out."""
    return model.fc(model.pool(a).flatten(1))


# --- fast equals slow ----------------------------------------------------------------------------------
FAST_SLOW = [
    ("tiny2d", {}, "fx"),
    ("tiny2d", {"constraint": "softmax", "objective": "class_oblivious"}, "fx"),
    ("tiny2d", {"constraint": "gauss", "learn_covariance": True}, "fx"),
    ("tiny2d", {"preset": "tf_compat"}, "fx"),
    ("residual", {"layer": "block_conv1"}, "fx"),
    ("tiny3d", {}, "fx"),
    ("tiny3d", {"temporal": "per_frame", "constraint": "gauss"}, "fx"),
    ("shapecheck", {"layer": "block_conv1"}, "replay"),
    ("shapecheck", {"layer": "block_conv2", "objective": "class_oblivious"}, "replay"),
]


@pytest.mark.parametrize(("which", "options", "engine"), FAST_SLOW)
def test_fast_equals_slow(which, options, engine):
    """The same filters, losses and iterations from the head-only engines as from a full forward per
    iteration (a forward hook substituting A ⊙ f̂). Stops happen (stop_tol 1e-3) at different times."""
    model = {"tiny2d": lambda: net(TinyCNN), "tiny3d": lambda: net(TinyCNN, dims=3),
             "residual": lambda: net(Residual), "shapecheck": lambda: net(ShapeCheck)}[which]()
    torch.manual_seed(1)
    x = torch.randn(3, 3, 4, 16, 16) if which == "tiny3d" else torch.randn(3, 3, 16, 16)
    runs = {}
    for mode in ("fast", "slow"):
        method = build("l2caf", model, mode=mode, max_iter=101, stop_tol=1e-3, **QUIET, **options)
        runs[mode] = (method(x, [0, 3, 1], return_info=True), method.engine)
    (fast, fast_engine), (slow, slow_engine) = runs["fast"], runs["slow"]
    assert (fast_engine, slow_engine) == (engine, "full")
    assert torch.equal(fast.extras["iterations"], slow.extras["iterations"])
    assert torch.allclose(fast.raw, slow.raw, atol=1e-5)
    assert torch.allclose(fast.extras["loss"], slow.extras["loss"], atol=1e-5, equal_nan=True)
    assert torch.allclose(fast.saliency, slow.saliency, atol=1e-4)


def test_unsplittable_network_warns_and_runs_slow():
    model = net(Unsplittable)
    x = torch.randn(2, 3, 16, 16)
    method = build("l2caf", model, layer="block_conv1", max_iter=5, **QUIET)
    with pytest.warns(RuntimeWarning, match=r"cannot run the network after layer 'block_conv1'.*fx split: torch.fx "
                                            r"cannot trace.*replay: .*does not reproduce.*falling back to slow mode"):
        info = method(x, 1, return_info=True)
    assert method.engine == "full" and info.saliency.shape == (2, 16, 16)


def test_zoo_default_model_splits_at_its_default_layer(effnet, sample_batch):
    """The embedded EfficientNet-Lite0 (timm) splits with torch.fx at bn2, and the head-only
    optimisation equals the full-forward one."""
    fast = build("l2caf", effnet, max_iter=3, **QUIET)
    slow = build("l2caf", effnet, max_iter=3, mode="slow", **QUIET)
    a, b = fast(sample_batch, 285, return_info=True), slow(sample_batch, 285, return_info=True)
    assert fast.engine == "fx" and fast.layer_name == "bn2" and a.raw.shape == (2, 7, 7)
    assert torch.allclose(a.raw, b.raw, atol=1e-5)


# --- the constraints and the objectives --------------------------------------------------------------
@pytest.mark.parametrize(("constraint", "temporal", "dims"), [("l2norm", "joint", 2), ("softmax", "joint", 2),
                                                              ("l2norm", "joint", 3), ("l2norm", "per_frame", 3),
                                                              ("softmax", "per_frame", 3)])
def test_uniform_filter_reproduces_the_logits_up_to_the_constraint_scale(constraint, temporal, dims):
    """The first loss (filter of ones) is exactly MSE(Ψ(c·A), Ψ(A)) with c = 1/√(#positions) (l2norm) or
    1/#positions (softmax), positions per frame for per_frame; for a GAP + FC head Ψ(c·A) = c·(NT − b) + b."""
    model = net(TinyCNN, dims=dims)
    x = torch.randn(2, 3, 4, 16, 16) if dims == 3 else torch.randn(2, 3, 16, 16)
    info = vizlab.explain(model, x, method="l2caf", objective="class_oblivious", constraint=constraint,
                          temporal=temporal, max_iter=1, return_info=True, **QUIET)
    a = model.features(x)
    positions = math.prod(a.shape[3:] if temporal == "per_frame" else a.shape[2:])
    scale = 1 / math.sqrt(positions) if constraint == "l2norm" else 1 / positions
    with torch.no_grad():
        nt, ft = head_of_tiny(model, a), head_of_tiny(model, a * scale)
    assert torch.allclose(info.extras["loss"][:, 0], (ft - nt).square().mean(1), rtol=1e-6, atol=1e-7)
    bias = model.fc.bias
    assert torch.allclose(ft, scale * (nt - bias) + bias, atol=1e-6)


@pytest.mark.parametrize(("constraint", "temporal"), [("l2norm", "joint"), ("l2norm", "per_frame"),
                                                      ("softmax", "per_frame"), ("gauss", "per_frame")])
def test_filters_keep_their_constraint(constraint, temporal):
    """After optimisation: unit L2 norm (l2norm), non-negative and summing to 1 (softmax, gauss), over the
    whole clip map (joint) or per frame (per_frame)."""
    model = net(TinyCNN, dims=3)
    info = vizlab.explain(model, torch.randn(2, 3, 4, 16, 16), [1, 2], method="l2caf", constraint=constraint,
                          temporal=temporal, max_iter=30, return_info=True, **QUIET)
    raw = info.raw.flatten(2) if temporal == "per_frame" else info.raw.flatten(1)[:, None]  # (N, groups, positions)
    if constraint == "l2norm":
        assert torch.allclose(raw.norm(dim=2), torch.ones(2, raw.shape[1]), atol=1e-5)
    else:
        assert (raw >= 0).all() and torch.allclose(raw.sum(dim=2), torch.ones(2, raw.shape[1]), atol=1e-5)


def test_map_is_the_absolute_filter_upsampled_and_min_max_normalised():
    """l2norm: the filter stays signed in raw; the map is |f̂| bilinearly upsampled, min-max per sample."""
    model = net(TinyCNN)
    info = vizlab.explain(model, torch.randn(2, 3, 16, 16), [1, 2], method="l2caf", max_iter=100, lr=50.0,
                          return_info=True, **QUIET)
    assert (info.raw < 0).any() and (info.raw > 0).any()
    up = F.interpolate(info.raw.abs().double()[:, None], size=(16, 16), mode="bilinear")[:, 0].flatten(1)
    expected = (up - up.min(1, keepdim=True).values) / (up.max(1, keepdim=True).values - up.min(1, keepdim=True).values)
    assert torch.allclose(info.saliency.double(), expected.view(2, 16, 16), atol=1e-5)


def test_class_specific_raises_the_target_and_lowers_the_others(request, monkeypatch):
    """shapes_cnn: against the uniform filter, the optimised filter raises each target logit and lowers
    the mean of the other logits; the loss falls."""
    model = synthetic_model(request, monkeypatch, "shapes_cnn")
    from vizlab.data.synthetic_shapes import SyntheticShapes

    data = SyntheticShapes(6, seed=31)
    x = model.normalize(torch.stack([data[i]["image"] for i in range(6)]))
    targets = torch.tensor([data[i]["label"] for i in range(6)])
    info = vizlab.explain(model, x, targets, method="l2caf", objective="class_specific", max_iter=200,
                          return_info=True, **QUIET)
    with torch.no_grad():
        a = model.net.features(x)
        uniform = model.net.fc(model.net.pool(a / math.sqrt(a[0, 0].numel())).flatten(1))
    filtered = info.extras["filtered_logits"]
    rows = torch.arange(6)
    assert (filtered[rows, targets] > uniform[rows, targets]).all()
    others = torch.ones_like(filtered, dtype=torch.bool)
    others[rows, targets] = False
    assert (filtered[others].view(6, -1).mean(1) < uniform[others].view(6, -1).mean(1)).all()
    assert (info.extras["final_loss"] < info.extras["loss"][:, 0]).all()


# --- batching ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cls", "options"), [(TinyCNN, {}), (TinyCNN, {"preset": "tf_compat"}),
                                              (BatchFromInput, {}), (Residual, {"layer": "block_conv1"})])
def test_samples_times_targets_in_one_batch_equal_per_target_runs(cls, options):
    """2 samples × 3 targets as 6 rows, each with its own stop (rows stop at different iterations and stay
    frozen — also under Adam, and when the head cannot drop rows), equal 6 one-row runs."""
    model = net(cls)
    torch.manual_seed(2)
    x = torch.randn(2, 3, 16, 16)
    table = top_k_targets(model, x, 3)
    rows, targets = repeat_for_targets(x, table)
    # a stop tolerance between the rows' first loss changes, so that some rows stop at iteration 50 and others later
    probe = build("l2caf", model, max_iter=51, stop_tol=0, **QUIET, **options)(rows, targets, return_info=True)
    change = (probe.extras["loss"][:, 50] - probe.extras["loss"][:, 0]).abs().double()
    tol = float(change.sort().values[2:4].mean())
    method = build("l2caf", model, max_iter=151, stop_tol=tol, **QUIET, **options)
    batched = method(rows, targets, return_info=True)
    if cls is BatchFromInput:
        assert method.engine == "fx"
    iterations = batched.extras["iterations"]
    assert len(set(iterations.tolist())) > 1, "the case must have rows stopping at different times"
    for r in range(6):
        single = method(rows[r:r + 1], int(targets[r]), return_info=True)
        assert int(single.extras["iterations"][0]) == int(iterations[r])
        assert torch.allclose(single.raw[0], batched.raw[r], atol=1e-5)
        assert torch.allclose(single.saliency[0], batched.saliency[r], atol=1e-4)
    assert torch.equal(batched.target.view(2, 3), table)


def test_a_sample_repeated_for_several_targets_goes_through_the_trunk_once():
    """Once the fx split is verified (first call), consecutive identical rows share one trunk pass, and the
    result equals the first call's (where every row went through the trunk and was checked against the model)."""
    model = net(TinyCNN)
    rows, targets = repeat_for_targets(torch.randn(2, 3, 16, 16), [[0, 1, 2], [3, 4, 0]])
    method = build("l2caf", model, max_iter=20, **QUIET)
    first = method(rows, targets, return_info=True)
    seen = []
    handle = model.features[0].register_forward_hook(lambda _m, _i, out: seen.append(out.shape[0]))
    try:
        again = method(rows, targets, return_info=True)
    finally:
        handle.remove()
    assert seen == [2] and method.engine == "fx"
    assert torch.allclose(first.raw, again.raw, atol=1e-6) and torch.allclose(first.logits, again.logits, atol=1e-6)


# --- Gaussian filters on any map ------------------------------------------------------------------------
def gaussian_by_hand(shape, mu, cov):
    """The normalised Gaussian over the centred grid of `shape` (c_i = i − (n − 1)/2), written out."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(n) - (n - 1) / 2 for n in shape], indexing="ij"), -1)
    d = coords.reshape(-1, len(shape)).double() - mu.double()
    q = torch.einsum("pi,ij,pj->p", d, torch.linalg.inv(cov.double()), d)
    w = torch.exp(-q / 2)
    return (w / w.sum()).view(shape).float()


@pytest.mark.parametrize(("size", "learn_cov"), [((14, 14), False), ((12, 12), False), ((10, 16), False),
                                                  ((10, 16), True)])
def test_gauss_on_odd_even_and_non_square_maps(size, learn_cov):
    """7×7, 6×6 and 5×8 maps: the filter starts centred (symmetric), moves its centre, and always equals the
    Gaussian at the reported centre and covariance over the centred grid."""
    model = net(TinyCNN)
    x = torch.randn(2, 3, *size)
    start = vizlab.explain(model, x, [0, 1], method="l2caf", constraint="gauss", max_iter=1, lr=1e-9, end_lr=0.0,
                           return_info=True, **QUIET)
    assert torch.allclose(start.raw, start.raw.flip(-1).flip(-2), atol=1e-6)  # centred on the map
    info = vizlab.explain(model, x, [0, 1], method="l2caf", constraint="gauss", learn_covariance=learn_cov,
                          max_iter=100, lr=20.0, return_info=True, **QUIET)
    shape = tuple(s // 2 for s in size)
    assert info.raw.shape == (2, *shape) and info.extras["centre"].shape == (2, 1, 2)
    assert info.extras["centre"].abs().sum() > 0.05
    for r in range(2):
        cov = info.extras["covariance"][r, 0]
        assert torch.allclose(info.raw[r], gaussian_by_hand(shape, info.extras["centre"][r, 0], cov), atol=1e-5)
    if learn_cov:
        assert not torch.allclose(info.extras["covariance"], torch.eye(2).expand(2, 1, 2, 2), atol=1e-3)


def test_gauss_joint_clip_filter_and_maps_it_cannot_fit():
    model = net(TinyCNN, dims=3)
    info = vizlab.explain(model, torch.randn(1, 3, 4, 12, 16), 0, method="l2caf", constraint="gauss", max_iter=20,
                          return_info=True, **QUIET)
    assert info.extras["centre"].shape == (1, 1, 3)  # (t, y, x)
    assert torch.allclose(info.raw[0], gaussian_by_hand((2, 6, 8), info.extras["centre"][0, 0], torch.eye(3)),
                          atol=1e-5)
    with pytest.raises(ConfigError, match=r"at least 2 positions along every axis.*1×6×8 map.*temporal=per_frame"):
        vizlab.explain(model, torch.randn(1, 3, 2, 12, 16), 0, method="l2caf", constraint="gauss", **QUIET)
    with pytest.raises(ConfigError, match="1×1 map: a l2norm filter over a single position"):
        vizlab.explain(net(TinyCNN), torch.randn(1, 3, 2, 2), 0, method="l2caf", layer="features", **QUIET)


def test_constrained_filters_directly():
    f = ConstrainedFilters("gauss", (4, 5), rows=3, init="normal", seed=7)
    assert torch.allclose(f.params[0][0], f.params[0][2])  # one draw shared by every row
    assert torch.allclose(f.constrained().sum(dim=(1, 2)), torch.ones(3))


# --- the PyTorch port's loop, re-stated plainly ------------------------------------------------------------
def port_loop(trunk, head, x, target, objective, max_iter, lr=0.5, min_lr=1e-5, tol=1e-6, adam=False, init=None):
    """One sample at a time, as ahmdtaha/l2_caf_pytorch's class_specific.py / class_oblivious.py do it:
    f = ones(S, S); SGD(lr) with LambdaLR poly → min_lr; loss before the step; every 50 iterations stop
    if |loss − previous| < tol. Returns (normalised filter, optimiser steps taken, losses)."""
    a = trunk(x).detach()
    nt = head(a).detach()
    f = nn.Parameter(torch.ones(a.shape[-2:]) if init is None else init.clone())
    opt = torch.optim.Adam([f], lr=lr) if adam else torch.optim.SGD([f], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda=lambda step: ((lr - min_lr) * (1 - step / max_iter) ** 1 + min_lr) / lr)
    sign = torch.ones_like(nt)
    sign[0, target] = -1
    prev, iteration, losses = float("inf"), 0, []
    while iteration < max_iter:
        ft = head(a * F.normalize(f, dim=[0, 1]))
        loss = nn.MSELoss()(ft, nt) if objective == "class_oblivious" else torch.sum(ft * sign)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if iteration % 50 == 0:
            if abs(loss.item() - prev) < tol:
                break
            prev = loss.item()
        iteration += 1
    steps = min(iteration + 1, max_iter)
    return F.normalize(f.detach(), dim=[0, 1]), steps, losses


@pytest.mark.parametrize(("objective", "tol", "preset"), [("class_specific", 1e-6, "pt_compat"),
                                                          ("class_oblivious", 1e-6, "pt_compat"),
                                                          ("class_oblivious", 3e-3, "pt_compat"),
                                                          ("class_specific", 1e-6, "tf_compat")])
def test_matches_a_plain_restatement_of_the_pytorch_port(objective, tol, preset):
    model = net(TinyCNN)
    torch.manual_seed(5)
    x = torch.randn(2, 3, 16, 16)
    targets = [3, 1]
    info = vizlab.explain(model, x, targets, method="l2caf", objective=objective, max_iter=220, stop_tol=tol,
                          preset=preset, return_info=True, **QUIET)
    tf = preset == "tf_compat"
    init = torch.randn((1, 64), generator=torch.Generator().manual_seed(0)).view(8, 8) if tf else None
    for n, t in enumerate(targets):
        filt, steps, losses = port_loop(model.features, lambda a: head_of_tiny(model, a), x[n:n + 1], t, objective,
                                        220, tol=tol, adam=tf, min_lr=0.0 if tf else 1e-5, init=init)
        assert int(info.extras["iterations"][n]) == steps
        assert torch.allclose(info.raw[n], filt, atol=1e-5)
        assert torch.allclose(info.extras["loss"][n, :steps], torch.tensor(losses), rtol=1e-5, atol=1e-5)
    if tol > 1e-6:
        assert (info.extras["iterations"] < 220).all()  # the stop rule fired, at a multiple of 50 (+ 1)
        assert ((info.extras["iterations"] - 1) % 50 == 0).all()


# --- options and errors ---------------------------------------------------------------------------------
def test_presets_and_explicit_options():
    model = net(TinyCNN)
    tf = build("l2caf", model, preset="tf_compat")
    assert (tf.optimizer_name, tf.lr, tf.end_lr, tf.init, tf.max_iter) == ("adam", 0.5, 0.0, "normal", 1000)
    mixed = build("l2caf", model, preset="tf_compat", lr=0.05, optimizer="sgd")  # explicit options win
    assert (mixed.optimizer_name, mixed.lr, mixed.end_lr, mixed.init) == ("sgd", 0.05, 0.0, "normal")
    pt = build("l2caf", model)
    assert (pt.optimizer_name, pt.lr, pt.end_lr, pt.init, pt.stop_period, pt.stop_tol) == ("sgd", 0.5, 1e-5, "ones",
                                                                                            50, 1e-6)
    assert "optimizer='sgd', lr=0.05" in repr(mixed)


@pytest.mark.parametrize(("options", "match"), [
    ({"objective": "oblivious"}, "objective must be one of 'class_oblivious', 'class_specific'"),
    ({"constraint": "l1"}, "constraint must be one of 'l2norm', 'softmax', 'gauss'"),
    ({"preset": "torch"}, "preset must be one of 'pt_compat', 'tf_compat'"),
    ({"mode": "quick"}, "mode must be one of 'fast', 'slow'"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of 'sgd', 'adam'"),
    ({"lr": -1.0}, "lr must be a number > 0"),
    ({"lr": 0.1, "end_lr": 0.2}, r"end_lr \(0.2\) must not exceed lr"),
    ({"max_iter": 0}, "max_iter must be an integer >= 1"),
    ({"stop_period": 2.5}, "stop_period must be an integer"),
    ({"learn_covariance": True}, "learn_covariance=true needs constraint=gauss"),
    ({"temporal": "mean"}, "temporal must be one of 'joint', 'per_frame'"),
])
def test_bad_options_raise_one_config_error(options, match):
    with pytest.raises(ConfigError, match=match):
        build("l2caf", net(TinyCNN), **options)


class SideBranch(TinyCNN):
    """Computes `extra` from the features but does not use it for the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.extra = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        a = self.features(x)
        self.last_extra = self.extra(a)
        return self.fc(self.pool(a).flatten(1))


@pytest.mark.parametrize("mode", ["fast", "slow"])
def test_layer_errors(mode):
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ConfigError, match="Layer 'extra' does not feed the"):
        vizlab.explain(net(SideBranch), x, method="l2caf", layer="extra", mode=mode, max_iter=2, **QUIET)
    with pytest.raises(ConfigError, match=r"Layer 'fc' outputs shape \(2, 5\); L2-CAF filters a feature map"):
        vizlab.explain(net(TinyCNN), x, method="l2caf", layer="fc", mode=mode, **QUIET)
    with pytest.raises(ConfigError, match="1×1 map"):
        vizlab.explain(net(TinyCNN), x, method="l2caf", layer="pool", mode=mode, **QUIET)
    with pytest.raises(LayerNotFoundError, match="Did you mean: 'features'"):
        build("l2caf", net(TinyCNN), layer="featurs")
    with pytest.raises(InputError, match="out of range"):
        vizlab.explain(net(TinyCNN), x, 7, method="l2caf", mode=mode, **QUIET)


def test_layer_that_runs_twice_is_refused():
    class Twice(TinyCNN):
        def forward(self, x):
            a = self.features[1](self.features[0](x))
            a = self.features[1](a)  # the same ReLU again
            return self.fc(self.pool(self.features[3](self.features[2](a))).flatten(1))

    with pytest.raises(ConfigError, match=r"Layer 'features.1' runs 2 times per forward pass"):
        vizlab.explain(net(Twice), torch.randn(1, 3, 16, 16), method="l2caf", layer="features.1", **QUIET)


def test_multi_target_specs_are_checked():
    check_multi_target([0, 4], 5)
    check_multi_target("top5", 5)
    for spec, match in (("top0", "K must be between 1"), ("top6", "K must be between 1"), ([], "lists no class"),
                        ([1, 9], "9 is not a class index"), ([2, 2], "lists a class twice")):
        with pytest.raises(ConfigError, match=match):
            check_multi_target(spec, 5)


def test_progress_bar(capfd):
    vizlab.explain(net(TinyCNN), torch.randn(2, 3, 16, 16), method="l2caf", max_iter=60, progress=True)
    assert "l2caf 2 filters" in capfd.readouterr().err


# --- ground truth -------------------------------------------------------------------------------------------
def test_points_at_the_object_on_synthetic_shapes(request, monkeypatch):
    """shapes_cnn, 60 fresh images, default options (class-specific, l2norm, 1000 iterations, fast): the map's
    peak is within 3 px of the object for >= 0.9 of them (Grad-CAM on the same images: printed)."""
    from torch.utils.data import DataLoader

    from vizlab.data.synthetic_shapes import SyntheticShapes
    from vizlab.metrics import pointing_hits

    model = synthetic_model(request, monkeypatch, "shapes_cnn")
    batch = next(iter(DataLoader(SyntheticShapes(60, seed=4242), batch_size=60)))
    x = model.normalize(batch["image"])
    info = vizlab.explain(model, x, batch["label"], method="l2caf", return_info=True, **QUIET)
    hits = pointing_hits(info.saliency, batch["mask"], tolerance=3).mean()
    gradcam = pointing_hits(vizlab.explain(model, x, batch["label"], method="gradcam"), batch["mask"], 3).mean()
    print(f"pointing (3 px): l2caf {hits:.3f}, gradcam {gradcam:.3f}")
    assert hits >= 0.9, hits


@pytest.mark.slow
def test_points_at_the_moving_object_in_space_time(request, monkeypatch):
    """motion_cnn, 48 fresh clips, class-specific joint T'×H'×W' filters (and per-frame ones): the
    spatio-temporal peak lies within 3 px of the object in its own frame for >= 0.8 of the clips, and on
    the union of the frames' masks for >= 0.95 (Grad-CAM on the same clips: 0.95 / 1.0 on 200 clips)."""
    from torch.utils.data import DataLoader

    from vizlab.data.synthetic_motion import SyntheticMotion
    from vizlab.metrics import pointing_hits

    model = synthetic_model(request, monkeypatch, "motion_cnn")
    batch = next(iter(DataLoader(SyntheticMotion(48, seed=4243), batch_size=48)))
    x, masks = model.normalize(batch["image"]), batch["mask"]
    union = masks.any(1, keepdim=True).expand_as(masks)
    for temporal in ("joint", "per_frame"):
        sal = vizlab.explain(model, x, batch["label"], method="l2caf", temporal=temporal, **QUIET)
        own, anywhere = pointing_hits(sal, masks, 3).mean(), pointing_hits(sal, union, 3).mean()
        print(f"{temporal}: pointing (3 px) {own:.3f}, on the union {anywhere:.3f}")
        assert own >= 0.8 and anywhere >= 0.95, (temporal, own, anywhere)


# --- the explain loop ------------------------------------------------------------------------------------------
def test_explain_loop_runs_l2caf_with_top_k_targets(tmp_path, request, monkeypatch):
    """CLI end to end with W&B: task.target=top2 gives 2 records and file sets per image (named by the target),
    the raw filter at layer resolution, details, the filter and loss figures and the mean loss curve, in
    results.json and in the offline W&B run (read back). A bad option fails with one line."""
    import numpy as np

    from vizlab.loggers import read_offline_run

    synthetic_model(request, monkeypatch, "shapes_cnn")  # the subprocess reads VIZLAB_CACHE from here
    proc = run_cli(PYTHON, "run.py", "model=shapes_cnn", "dataset=synthetic_shapes", "dataset.num_samples=3",
                   "method=l2caf", "method.max_iter=60", "method.progress=false", "task.target=top2",
                   "metric=[pointing_game]", "metric.pointing_game.tolerance=3", "logger=wandb", "task.save_maps=true",
                   f"paths.output_root={tmp_path}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = tmp_path.rglob("results.json")
    results = json.loads(path.read_text())
    assert "engine='fx'" in results["method"]["resolved"] and "optimizer='sgd'" in results["method"]["resolved"]
    samples = results["samples"]
    assert [(s["index"], s["target_rank"]) for s in samples] == [(i, k) for i in range(3) for k in range(2)]
    for first, second in zip(samples[::2], samples[1::2], strict=True):
        assert first["target_prob"] >= second["target_prob"] and first["target"] != second["target"]
        assert first["target"] == first["predicted"]
    sample = samples[1]
    stem = f"00000_shape_00000_t{sample['target']}"
    assert f"heatmaps/{stem}.png" in sample["files"] and sample["figures"] == {
        "filter": f"heatmaps/{stem}_filter.png", "loss": f"heatmaps/{stem}_loss.png"}
    raw = np.load(path.parent / f"maps/{stem}_raw.npy")
    assert raw.shape == (16, 16) and abs(np.linalg.norm(raw) - 1) < 1e-5
    assert {s["details"]["iterations"] for s in samples} <= {51, 60}  # the stop rule is checked at iteration 50
    assert len(results["curves"]["loss"]) == 60  # rows that stopped do not count after their stop
    assert results["summary"]["num_samples"] == 6 and "pointing_accuracy" in results["summary"]

    (run_dir,) = path.parent.glob("wandb/offline-run-*")
    run = read_offline_run(run_dir)
    assert run["summary"]["figures/filter/count"] == 6 and run["summary"]["figures/loss/count"] == 6
    rows = [r for r in run["history"] if "curves/iteration" in r]
    assert [r["curves/loss"] for r in rows] == pytest.approx(results["curves"]["loss"])
    (table,) = [f for f in run["files"] if f.endswith(".table.json")]
    table = json.loads((run_dir / "files" / table).read_text())
    assert {"iterations", "final_loss", "filtered_target_logit"} <= set(table["columns"]) and len(table["data"]) == 6

    bad = run_cli(PYTHON, "run.py", "method=l2caf", "method.constraint=l1", "logger=none",
                  f"paths.output_root={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "constraint must be one of 'l2norm', 'softmax', 'gauss'" in bad.stderr
    assert "Traceback" not in bad.stderr and not [p for p in (tmp_path / "bad").rglob("*") if p.is_file()]


def test_explain_loop_lists_of_targets_work_for_any_method(tmp_path, monkeypatch):
    """task.target=[2,0] with Grad-CAM in process: one record per (image, class), in the listed order, and each
    map equals the one explained with that single target."""
    import numpy as np
    from hydra import compose, initialize_config_dir

    from vizlab.tasks.explain import run_explain

    monkeypatch.chdir(tmp_path)
    overrides = ["dataset.images=[chelsea,coffee]", "metric=none", "logger=none", "task.save_maps=true",
                 "task.target=[2,0]"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
        bad = compose("config", overrides=[*overrides[:-1], "task.target=top0"])
    results = run_explain(cfg, Path(tmp_path) / "job")
    samples = results["samples"]
    assert [(s["name"], s["target"], s["target_rank"]) for s in samples] == [
        ("chelsea", 2, 0), ("chelsea", 0, 1), ("coffee", 2, 0), ("coffee", 0, 1)]
    model = vizlab.load_model("efficientnet_lite0")
    from vizlab.data import SampleImages

    x = model.normalize(torch.stack([SampleImages(224, ["chelsea"])[0]["image"]]))
    single = vizlab.explain(model, x, 0, method="gradcam")[0].numpy()
    assert np.allclose(np.load(tmp_path / "job" / "maps" / "00000_chelsea_t0_saliency.npy"), single, atol=1e-5)
    with pytest.raises(ConfigError, match="task.target=top0: K must be between 1"):
        run_explain(bad, Path(tmp_path) / "bad")


def test_config_file_lists_every_option_with_the_class_defaults():
    from omegaconf import OmegaConf

    from vizlab.methods import method_parameters

    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "method" / "l2caf.yaml"))
    assert cfg.pop("name") == "l2caf"
    assert cfg == method_parameters("l2caf")
    lines = (ROOT / "conf" / "method" / "l2caf.yaml").read_text().splitlines()
    assert all("#" in line for line in lines if line and not line.startswith("name:"))


