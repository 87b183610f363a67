"""Cross-checks against the reference implementations: Captum and pytorch-grad-cam."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from pytorch_grad_cam import GradCAM as PGCGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import vizlab
from vizlab.models import load_model


def minmax_np(a):
    a = a - a.min(axis=tuple(range(1, a.ndim)), keepdims=True)
    return a / np.maximum(a.max(axis=tuple(range(1, a.ndim)), keepdims=True), 1e-12)


def pgc_gradcam(model, layer, x, targets):
    """pytorch-grad-cam needs parameters that require grad; enable them for the call only."""
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    try:
        with PGCGradCAM(model=model, target_layers=[layer]) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    finally:
        for p in params:
            p.requires_grad_(False)


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    with pytest.warns(UserWarning):
        return load_model("resnet18")


def test_gradcam_matches_captum_and_pytorch_grad_cam_on_embedded_model(effnet, sample_batch):
    targets = [285, 967]
    ours = vizlab.explain(effnet, sample_batch, targets, method="gradcam", return_info=True)
    captum = LayerGradCam(effnet, effnet.net.bn2).attribute(sample_batch, target=targets)
    assert torch.allclose(ours.raw, captum[:, 0], rtol=1e-4, atol=1e-7)  # same signed map
    peer = pgc_gradcam(effnet, effnet.net.bn2, sample_batch, targets)
    # pytorch-grad-cam: ReLU, min-max at layer resolution, then cv2 bilinear resize
    assert np.abs(peer - ours.saliency.numpy()).max() < 2e-3


def test_gradcam_matches_peers_on_resnet18(resnet18):
    torch.manual_seed(1)
    x = torch.randn(3, 3, 160, 160)
    targets = [1, 500, 999]
    ours = vizlab.explain(resnet18, x, targets, method="gradcam", return_info=True)
    captum = LayerGradCam(resnet18, resnet18.net.layer4).attribute(x, target=targets, relu_attributions=True)
    assert torch.allclose(ours.raw.clamp_min(0), captum[:, 0], rtol=1e-4, atol=1e-7)
    up = LayerAttribution.interpolate(captum, (160, 160), interpolate_mode="bilinear")[:, 0].detach()
    assert np.allclose(minmax_np(up.numpy()), ours.saliency.numpy(), atol=1e-5)
    peer = pgc_gradcam(resnet18, resnet18.net.layer4, x, targets)
    assert np.abs(peer - ours.saliency.numpy()).max() < 2e-3


def test_video_gradcam_pooled_matches_captum_3d():
    torch.manual_seed(2)
    with pytest.warns(UserWarning):
        model = load_model("r3d_18")
    x = torch.randn(2, 3, 8, 64, 64)
    ours = vizlab.explain(model, x, [3, 7], method="gradcam", return_info=True)
    captum = LayerGradCam(model, model.net.layer4).attribute(x, target=[3, 7])
    assert ours.raw.shape == captum[:, 0].shape == (2, 1, 4, 4)
    assert torch.allclose(ours.raw, captum[:, 0], rtol=1e-4, atol=1e-7)
    assert ours.saliency.shape == (2, 8, 64, 64)


@pytest.mark.parametrize(("rule", "captum_method"), [
    ("left", "riemann_left"), ("right", "riemann_right"), ("middle", "riemann_middle")])
def test_integrated_gradients_matches_captum(effnet, sample_batch, rule, captum_method):
    x = sample_batch[:1]
    ours = vizlab.explain(effnet, x, 285, method="integrated_gradients", steps=8, rule=rule, return_info=True)
    baseline = effnet.normalize(torch.zeros_like(x))  # normalised black
    ref = IntegratedGradients(effnet).attribute(x, baselines=baseline, target=285, n_steps=8,
                                                method=captum_method, internal_batch_size=16)
    scale = ref.abs().max()
    assert (ours.raw - ref).abs().max() < 1e-3 * scale


def test_trapezoid_rule_is_exact_where_captums_is_not(tiny2d):
    """Captum's riemann_trapezoid uses step 1/n on linspace(0, 1, n): weights sum to 1 − 1/n.
    Ours uses 1/(n − 1) (weights sum to 1), so ours = Captum's × n/(n − 1)."""
    x = torch.randn(2, 3, 16, 16)
    ours = vizlab.explain(tiny2d, x, [0, 1], method="integrated_gradients", steps=10, rule="trapezoid",
                          baseline="zeros", return_info=True)
    ref = IntegratedGradients(tiny2d).attribute(x, baselines=torch.zeros_like(x), target=[0, 1], n_steps=10,
                                                method="riemann_trapezoid")
    assert torch.allclose(ours.raw, ref * 10 / 9, rtol=1e-4, atol=1e-7)


def test_integrated_gradients_completeness():
    """Σ IG = f(x) − f(x0): with a smooth network the Riemann error shrinks with the step count."""
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Softplus(),
                              torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.Tanh(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    x = torch.randn(3, 3, 12, 12) * 2
    with torch.no_grad():
        gap = (net(x) - net(torch.zeros_like(x)))[:, 2]
    coarse = vizlab.explain(net, x, 2, method="integrated_gradients", steps=4, rule="left", baseline="zeros",
                            return_info=True)
    fine = vizlab.explain(net, x, 2, method="integrated_gradients", steps=200, rule="trapezoid",
                          baseline="zeros", return_info=True)
    assert torch.allclose(fine.raw.flatten(1).sum(1), gap, rtol=1e-3, atol=1e-5)
    assert fine.extras["delta"].abs().max() < 1e-3 * gap.abs().max()
    assert coarse.extras["delta"].abs().max() > 10 * fine.extras["delta"].abs().max()
    assert torch.allclose(coarse.extras["delta"], coarse.raw.flatten(1).sum(1) - gap, atol=1e-5)


def test_gradients_and_grad_x_input_match_captum(effnet, sample_batch):
    targets = [285, 967]
    ours = vizlab.explain(effnet, sample_batch, targets, method="gradients", return_info=True)
    ref = Saliency(effnet).attribute(sample_batch.clone(), target=targets, abs=False)
    assert torch.allclose(ours.raw, ref, atol=1e-6)
    ours = vizlab.explain(effnet, sample_batch, targets, method="grad_x_input", return_info=True)
    ref = InputXGradient(effnet).attribute(sample_batch.clone(), target=targets)
    assert torch.allclose(ours.raw, ref, atol=1e-6)


def test_polarity_fixes_the_seed_sign_bug(tiny2d):
    """'both' keeps negative evidence (|g|); the seed clipped it away. positive + negative = both."""
    x = torch.randn(1, 3, 16, 16)
    raw = vizlab.explain(tiny2d, x, 0, method="gradients", return_info=True).raw
    assert (raw < 0).any()
    from vizlab.methods.gradients import apply_polarity

    pos, neg, both = (apply_polarity(raw, p) for p in ("positive", "negative", "both"))
    assert torch.equal(pos + neg, both)
    sal_both = vizlab.explain(tiny2d, x, 0, method="gradients", polarity="both")
    only_neg = (raw.clamp_max(0).abs().mean(1) > 0) & (raw.clamp_min(0).mean(1) == 0)
    assert (sal_both[only_neg] > 0).all()  # pixels with only negative gradient still show


def test_smoothgrad_without_noise_reduces_to_gradients(tiny2d):
    x = torch.randn(2, 3, 16, 16)
    grads = vizlab.explain(tiny2d, x, [1, 2], method="gradients", return_info=True).raw
    mean = vizlab.explain(tiny2d, x, [1, 2], method="smoothgrad", noise_level=0.0, variant="mean",
                          n_samples=3, return_info=True).raw
    square = vizlab.explain(tiny2d, x, [1, 2], method="smoothgrad", noise_level=0.0, n_samples=3,
                            return_info=True).raw
    var = vizlab.explain(tiny2d, x, [1, 2], method="smoothgrad", noise_level=0.0, variant="variance",
                         n_samples=3, return_info=True).raw
    assert torch.allclose(mean, grads, atol=1e-6)
    assert torch.allclose(square, grads**2, atol=1e-7)
    assert var.abs().max() < 1e-6
    noisy_a = vizlab.explain(tiny2d, x, 1, method="smoothgrad", seed=5)
    noisy_b = vizlab.explain(tiny2d, x, 1, method="smoothgrad", seed=5)
    assert torch.equal(noisy_a, noisy_b)  # seeded noise is reproducible
