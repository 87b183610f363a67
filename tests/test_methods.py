"""The method contract on real networks: shapes, ranges, batching, targets, hooks, 2-D and 3-D."""

from __future__ import annotations

import pytest
import torch

import vizlab
from vizlab.errors import ConfigError, InputError, LayerNotFoundError
from vizlab.methods import REGISTRY, available_methods, build

FAST = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"n_samples": 3},
        **{name: {"max_iter": 6, "progress": False} for name in ("extremal", "ep2d", "ep3d", "step", "l2caf")}}
FAST["step"]["core_size"] = [3, 5, 5]  # the default (7, 11, 11) kernel needs clips of >= 7 frames


def opts(name):
    return FAST.get(name, {})


def generic(dims: int = 2) -> list[str]:
    """Methods that run on any network for input of `dims` spatial(-temporal) dims (2: images, 3: clips)."""
    return [n for n in available_methods() if REGISTRY[n].any_model and REGISTRY[n].input_dims in (None, dims + 2)]


MASKS = ("extremal", "ep2d", "ep3d", "step")  # perturbation masks in [0, 1], not rescaled
GENERIC_BY_DIMS = [(n, d) for d in (2, 3) for n in generic(d)]


@pytest.mark.parametrize(("name", "dims"), GENERIC_BY_DIMS)
def test_shapes_range_device(name, dims, tiny2d, tiny3d):
    model = tiny2d if dims == 2 else tiny3d
    shape = (3, 3, 16, 16) if dims == 2 else (3, 3, 4, 16, 16)
    x = torch.randn(shape)
    info = vizlab.explain(model, x, method=name, return_info=True, **opts(name))
    assert info.saliency.shape == (shape[0], *shape[2:])
    assert info.saliency.dtype == torch.float32 and info.saliency.device == x.device
    assert info.saliency.min() >= 0 and info.saliency.max() <= 1
    if name not in MASKS:  # maps are scaled to a peak of 1; perturbation masks keep their absolute values
        assert torch.allclose(info.saliency.flatten(1).max(1).values, torch.ones(3))
    assert torch.equal(info.target, info.logits.argmax(1))  # target=None → predicted class


@pytest.mark.parametrize("name", generic(2))
def test_batch_equals_per_sample_with_per_sample_targets(name, tiny2d):
    torch.manual_seed(3)
    x = torch.randn(3, 3, 16, 16)
    targets = [4, 0, 2]
    method = build(name, tiny2d, **opts(name))
    batched = method(x, targets, return_info=True)
    assert batched.target.tolist() == targets
    for i, t in enumerate(targets):
        single = method(x[i:i + 1], t, return_info=True)
        if name == "smoothgrad":  # noise is drawn per batch shape; compare the noiseless part below
            continue
        assert torch.allclose(single.saliency[0], batched.saliency[i], atol=1e-5)
        assert torch.allclose(single.raw[0], batched.raw[i], atol=1e-5)


@pytest.mark.parametrize("name", generic(2))
def test_no_hook_leak_and_parameters_restored(name, tiny2d):
    for p in tiny2d.parameters():
        p.requires_grad_(True)
    tiny2d.train()
    method = build(name, tiny2d, **opts(name))
    x = torch.randn(2, 3, 16, 16)
    first = method(x, 1)
    for _ in range(3):
        again = method(x, 1)
    with pytest.raises(InputError):
        method(x, 99)  # an error mid-call must not leave hooks behind either
    assert torch.allclose(first, again)
    for module in tiny2d.modules():
        assert not module._forward_hooks and not module._backward_hooks and not module._forward_pre_hooks
    assert all(p.requires_grad for p in tiny2d.parameters())
    assert tiny2d.training  # mode restored
    assert all(p.grad is None for p in tiny2d.parameters())  # no weight gradients computed


def test_cam_equals_gradcam_on_gap_fc_network(tiny2d, tiny3d):
    """For GAP + linear heads, Grad-CAM's weights are W[t]/(spatial size): the maps coincide."""
    for model, shape in ((tiny2d, (2, 3, 16, 16)), (tiny3d, (2, 3, 4, 16, 16))):
        x = torch.randn(shape)
        cam = vizlab.explain(model, x, [1, 3], method="cam", return_info=True)
        grad = vizlab.explain(model, x, [1, 3], method="gradcam", return_info=True)
        spatial = cam.raw[0].numel()
        assert torch.allclose(cam.raw / spatial, grad.raw, atol=1e-6)
        assert torch.allclose(cam.saliency, grad.saliency, atol=1e-5)


def test_gradcam_backward_stops_at_the_layer(tiny2d):
    """No gradient reaches the modules before the target layer (the 'limit' of design.md)."""
    calls = []
    first_conv = tiny2d.features[0]
    handle = first_conv.register_full_backward_hook(lambda *a: calls.append(1))
    try:
        vizlab.explain(tiny2d, torch.randn(2, 3, 16, 16), method="gradcam", layer="features.2")
    finally:
        handle.remove()
    assert calls == []


def test_gradcam_per_frame_weights(tiny3d):
    x = torch.randn(1, 3, 4, 16, 16)
    info = vizlab.explain(tiny3d, x, 2, method="gradcam", temporal="per_frame", return_info=True,
                          layer="features.2")
    # recompute by hand: per-frame weights = spatial mean of the gradient at each time step
    acts = tiny3d.features[:3](x).detach().requires_grad_(True)
    logits = tiny3d.fc(tiny3d.pool(tiny3d.features[3](acts.clone())).flatten(1))
    (g,) = torch.autograd.grad(logits[0, 2], acts)
    expected = (g.mean(dim=(3, 4), keepdim=True) * acts).sum(1).detach()
    assert torch.allclose(info.raw, expected, atol=1e-6)
    pooled = vizlab.explain(tiny3d, x, 2, method="gradcam", return_info=True, layer="features.2")
    assert not torch.allclose(pooled.raw, info.raw)


def test_explain_on_a_user_network_without_zoo_wrapper(tiny2d):
    # default layer = last conv; CAM finds the last Linear
    for name in ("gradcam", "cam"):
        sal = vizlab.explain(tiny2d, torch.randn(1, 3, 16, 16), method=name)
        assert sal.shape == (1, 16, 16)


def test_embedded_model_gradcam_points_at_the_cat(effnet, sample_batch):
    """On chelsea the Grad-CAM peak for 'Egyptian cat' lies on the cat (central region)."""
    sal = vizlab.explain(effnet, sample_batch[:1], 285, method="gradcam")[0]
    y, x = divmod(int(sal.argmax()), sal.shape[1])
    assert 40 < y < 200 and 40 < x < 200
    assert sal.mean() < 0.5  # a localised map, not a flat one


@pytest.mark.parametrize(("x", "target", "match"), [
    (torch.randn(3, 16, 16), None, "batch dimension"),
    (torch.randn(1, 1, 16, 16), None, "expects 3"),
    (torch.randn(1, 3, 2, 16, 16), None, "expects an image"),
    (torch.full((1, 3, 16, 16), float("nan")), None, "NaN"),
    (torch.randint(0, 255, (1, 3, 16, 16)), None, "float tensor"),
    (torch.randn(1, 3, 16, 16), 5, "out of range"),
    (torch.randn(1, 3, 16, 16), -1, "out of range"),
    (torch.randn(2, 3, 16, 16), [1, 2, 3], "3 targets for a batch of 2"),
])
@pytest.mark.parametrize("name", ["gradcam", "integrated_gradients", "gradients"])
def test_bad_inputs(name, x, target, match, tiny2d):
    with pytest.raises(InputError, match=match):
        vizlab.explain(tiny2d, x, target, method=name, **opts(name))


def test_bad_options(tiny2d):
    with pytest.raises(ConfigError, match="Unknown method 'gradcm'.*Did you mean: 'gradcam'"):
        build("gradcm", tiny2d)
    with pytest.raises(ConfigError, match="no option.*'stpes'.*Valid options"):
        build("integrated_gradients", tiny2d, stpes=3)
    with pytest.raises(ConfigError, match="polarity"):
        build("gradients", tiny2d, polarity="up")
    with pytest.raises(ConfigError, match="temporal"):
        build("gradcam", tiny2d, temporal="mean")
    with pytest.raises(ConfigError, match="rule"):
        build("integrated_gradients", tiny2d, rule="simpson")
    with pytest.raises(LayerNotFoundError, match="Did you mean"):
        build("gradcam", tiny2d, layer="feature.2")
    with pytest.raises(ConfigError, match="not GAP"):
        build("cam", SqueezeHead(), layer="conv")(torch.randn(1, 3, 8, 8))


class SqueezeHead(torch.nn.Module):
    """conv (6 ch) → 1×1 conv (4 ch) → GAP → fc: CAM at `conv` does not match the fc input."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.squeeze = torch.nn.Conv2d(6, 4, 1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.squeeze(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("name", generic(2))
def test_methods_work_inside_no_grad(name, tiny2d):
    """Callers (e.g. Lightning's test loop) often run under torch.no_grad()."""
    x = torch.randn(2, 3, 16, 16)
    expected = vizlab.explain(tiny2d, x, 1, method=name, **opts(name))
    with torch.no_grad():
        got = vizlab.explain(tiny2d, x, 1, method=name, **opts(name))
    assert torch.allclose(expected, got)
