"""The CAM family: cross-checks against pytorch-grad-cam on images (end to end) and on clips (its
weight formulas on our captured 5-D activations, since its end-to-end call is 2-D only), the
temporal rule, Score-CAM against a plain loop, and localisation on the trained synthetic nets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import module_synthetic_model, synthetic_model
from pytorch_grad_cam import EigenCAM as PGCEigenCAM
from pytorch_grad_cam import GradCAMPlusPlus as PGCGradCAMPlusPlus
from pytorch_grad_cam import LayerCAM as PGCLayerCAM
from pytorch_grad_cam import ScoreCAM as PGCScoreCAM
from pytorch_grad_cam import XGradCAM as PGCXGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction
from torch.utils.data import DataLoader

import vizlab
from vizlab.methods import build
from vizlab.methods.base import logits_of, minmax, upsample

PEERS = {"gradcampp": PGCGradCAMPlusPlus, "xgradcam": PGCXGradCAM, "layercam": PGCLayerCAM,
         "eigencam": PGCEigenCAM, "scorecam": PGCScoreCAM}
GRADIENT_VARIANTS = ("gradcampp", "xgradcam", "layercam")
CHANNEL_WEIGHT_VARIANTS = ("gradcam", "gradcampp", "xgradcam", "scorecam", "eigencam")
FAMILY = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "eigencam")


def pearson(a: np.ndarray, b: np.ndarray) -> list[float]:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return [float(np.corrcoef(a[i], b[i])[0, 1]) for i in range(len(a))]


def peer_map(name, model, layer, x, targets, batch_size=32):
    """pytorch-grad-cam end to end (it needs parameters that require grad: enabled for the call only)."""
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    try:
        with PEERS[name](model=model, target_layers=[layer]) as cam:
            cam.batch_size = batch_size
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    finally:
        for p in params:
            p.requires_grad_(False)


def sign_corrected_projection(acts: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's get_2d_projection_with_sign_correction with full_matrices=False (its full
    U, which it never uses, costs seconds at 1000+ positions): centre, project on VT[0], flip where
    |min| > |max|."""
    rows = acts.reshape(acts.shape[0], acts.shape[1], -1).transpose(0, 2, 1)
    rows = rows - rows.mean(axis=1, keepdims=True)
    vt = np.linalg.svd(rows, full_matrices=False)[2]
    proj = np.einsum("gpc,gc->gp", rows, vt[:, 0])
    flip = np.abs(proj.min(1)) > np.abs(proj.max(1))
    return np.where(flip[:, None], -proj, proj).reshape(acts.shape[0], *acts.shape[2:]).astype(np.float32)


def test_sign_corrected_projection_is_pytorch_grad_cams():
    acts = np.random.default_rng(0).random((3, 16, 2, 5, 5), dtype=np.float32)
    assert np.allclose(sign_corrected_projection(acts), get_2d_projection_with_sign_correction(acts), atol=1e-5)


def peer_raw(name, model, layer, s) -> np.ndarray:
    """pytorch-grad-cam's signed map from *our* captured activations and gradients (any rank)."""
    cam = PEERS[name](model=model, target_layers=[layer])
    try:
        acts, grads = s.acts.numpy(), None if s.grads is None else s.grads.numpy()
        return cam.get_cam_image(s.x, layer, None, acts, grads, False)
    finally:
        cam.activations_and_grads.release()


@pytest.mark.parametrize("name", [*GRADIENT_VARIANTS, "eigencam"])
def test_matches_pytorch_grad_cam_on_the_embedded_model(name, effnet, sample_batch):
    targets = [285, 967]
    ours = vizlab.explain(effnet, sample_batch, targets, method=name, return_info=True)
    theirs = peer_map(name, effnet, effnet.net.bn2, sample_batch, targets)
    assert min(pearson(ours.saliency.numpy(), theirs)) >= 0.99
    if name != "gradcampp":  # same formula, same map (Grad-CAM++: pytorch-grad-cam's +1e-6 in α)
        assert np.abs(ours.saliency.numpy() - theirs).max() < 2e-3


def test_scorecam_matches_pytorch_grad_cam_on_shapes(request, monkeypatch):
    """The one difference is the masks' upsampling: vizlab (and the authors' code) use
    align_corners=False, pytorch-grad-cam align_corners=True; the channel softmax of the logits
    amplifies it. With pytorch-grad-cam's upsampling the maps are the same."""
    import vizlab.methods.cam_activation as cam_activation
    from vizlab.data.synthetic_shapes import SyntheticShapes

    model = synthetic_model(request, monkeypatch, "shapes_cnn")
    batch = next(iter(DataLoader(SyntheticShapes(6, seed=5), batch_size=6)))
    x, targets = model.normalize(batch["image"]), batch["label"]
    layer = dict(model.net.named_modules())[model.info.default_layer]
    theirs = peer_map("scorecam", model, layer, x, targets, batch_size=64)
    ours = vizlab.explain(model, x, targets, method="scorecam", batch_size=64)
    assert np.mean(pearson(ours.numpy(), theirs)) >= 0.95  # measured 0.975 (per sample 0.88 .. 0.999)
    monkeypatch.setattr(cam_activation, "upsample", lambda maps, size: torch.nn.functional.interpolate(
        maps[:, None], size=tuple(size), mode="bilinear", align_corners=True)[:, 0])
    aligned = vizlab.explain(model, x, targets, method="scorecam", batch_size=64)
    assert min(pearson(aligned.numpy(), theirs)) >= 0.999


@pytest.mark.slow
def test_scorecam_matches_pytorch_grad_cam_on_the_embedded_model(effnet, sample_batch):
    """1280 channels × 2 images = 2560 masked forwards each (a few minutes on 2 CPU threads)."""
    ours = vizlab.explain(effnet, sample_batch, [285, 967], method="scorecam")
    theirs = peer_map("scorecam", effnet, effnet.net.bn2, sample_batch, [285, 967])
    assert min(pearson(ours.numpy(), theirs)) >= 0.95


@pytest.fixture(scope="module")
def motion(request):
    """motion_cnn (trained) and 32 fresh clips with per-frame masks."""
    from vizlab.data.synthetic_motion import SyntheticMotion

    with module_synthetic_model(request, "motion_cnn") as model:
        batch = next(iter(DataLoader(SyntheticMotion(32, seed=777), batch_size=32)))
        yield model, model.normalize(batch["image"]), batch["label"], batch["mask"]


@pytest.mark.parametrize("name", [*GRADIENT_VARIANTS, "eigencam"])
def test_video_weights_are_pytorch_grad_cams_formulas(name, motion):
    """Its formulas are rank-generic; applied to our 5-D activations they give our signed map."""
    model, x, labels, _ = motion
    method = build(name, model)
    s = method.signals(x[:4], labels[:4])
    ours = method(x[:4], labels[:4], return_info=True).raw
    ref = peer_raw(name, model, method.layer, s)
    if name == "eigencam":  # Seg-Eigen-CAM's sign rule on pytorch-grad-cam's projection
        ref = sign_corrected_projection(s.acts.numpy())
    assert ours.shape == ref.shape == (4, *s.acts.shape[2:])
    assert_same_map(name, ours.numpy(), ref)


def assert_same_map(name: str, ours: np.ndarray, ref: np.ndarray) -> None:
    """Equal signed maps; for Grad-CAM++ equal up to pytorch-grad-cam's +1e-6 in α (Pearson ≥ 0.99)."""
    if name == "gradcampp":
        assert min(pearson(ours, ref)) >= 0.99
    else:
        assert np.allclose(ours, ref, rtol=1e-3, atol=2e-3 * np.abs(ref).max())


@pytest.mark.parametrize("name", ("gradcampp", "xgradcam", "eigencam"))
def test_per_frame_rule_equals_the_image_formula_on_each_frame(name, motion):
    """temporal=per_frame: each frame's weights are the 2-D formula on that frame alone. At a layer
    before the last block: at the GAP input of a GAP + linear head ∂y/∂A is constant over positions,
    so Grad-CAM's and XGrad-CAM's per-frame weights equal the pooled ones there."""
    model, x, labels, _ = motion
    method = build(name, model, layer="features.3", temporal="per_frame")
    s = method.signals(x[:3], labels[:3])
    ours = method(x[:3], labels[:3], return_info=True).raw  # (3, T', H', W')
    n, c, t, h, w = s.acts.shape
    frames = s.acts.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
    if name == "eigencam":
        ref = sign_corrected_projection(frames.numpy())
    else:
        grads = s.grads.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        frame_signals = type(s)(frames, grads, x, s.target, s.logits, (2, 3))
        ref = peer_raw(name, model, method.layer, frame_signals)
    assert_same_map(name, ours.numpy(), ref.reshape(n, t, h, w))
    pooled = build(name, model, layer="features.3")(x[:3], labels[:3], return_info=True).raw
    assert not torch.allclose(pooled, ours, rtol=1e-2)


def scorecam_reference(model, layer, x, target, per_frame=False):
    """One sample, one mask, one forward at a time: the Score-CAM algorithm written out."""
    maps = []
    box: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: box.append(out.detach().clone()) and None)
    for i in range(x.shape[0]):
        with torch.no_grad():
            box.clear()
            model(x[i:i + 1])
            acts = box[0][0]  # (C, *S'), before the in-place ReLU that follows the layer
            frames = range(acts.shape[1]) if per_frame else [None]
            scores = torch.zeros(acts.shape[0], len(frames))
            for k in range(acts.shape[0]):
                for j, f in enumerate(frames):
                    unit = acts[k] if f is None else acts[k] * (torch.arange(acts.shape[1]) == f).view(-1, 1, 1)
                    mask = minmax(upsample(unit[None], x.shape[2:]))[0]
                    scores[k, j] = logits_of(model(x[i:i + 1] * mask))[0, target[i]]
            w = scores.softmax(0)  # over channels (per frame)
            if per_frame:
                maps.append((w.view(*w.shape, 1, 1) * acts).sum(0))
            else:
                maps.append((w.view(-1, *([1] * (acts.dim() - 1))) * acts).sum(0))
    handle.remove()
    return torch.stack(maps)


@pytest.mark.parametrize("per_frame", [False, True])
def test_scorecam_batched_equals_the_plain_loop_on_clips(tiny3d, per_frame):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 4, 16, 16)
    target = torch.tensor([1, 3])
    method = build("scorecam", tiny3d, layer="features.2", batch_size=5,
                   temporal="per_frame" if per_frame else "pooled")
    ours = method(x, target, return_info=True)
    ref = scorecam_reference(tiny3d, tiny3d.features[2], x, target, per_frame)
    assert torch.allclose(ours.raw, ref, rtol=1e-4, atol=1e-6)
    assert ours.saliency.shape == (2, 4, 16, 16)


def test_xgradcam_equals_gradcam_on_gap_fc_networks(tiny2d, tiny3d):
    """After GAP + linear, ∂y/∂A is constant over positions, so XGrad-CAM's weights are Grad-CAM's."""
    for model, shape in ((tiny2d, (2, 3, 16, 16)), (tiny3d, (2, 3, 4, 16, 16))):
        x = torch.relu(torch.randn(shape))
        a = vizlab.explain(model, x, [1, 2], method="xgradcam", return_info=True).raw
        b = vizlab.explain(model, x, [1, 2], method="gradcam", return_info=True).raw
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", GRADIENT_VARIANTS)
def test_backward_stops_at_the_layer(name, tiny2d):
    calls = []
    handle = tiny2d.features[0].register_full_backward_hook(lambda *a: calls.append(1))
    try:
        vizlab.explain(tiny2d, torch.randn(2, 3, 16, 16), method=name, layer="features.2")
    finally:
        handle.remove()
    assert calls == []


@pytest.mark.parametrize("name", [n for n in FAMILY if n != "scorecam"])
def test_every_member_localises_the_moving_object(name, motion):
    """motion_cnn, 32 clips: (N, T, H, W) maps in [0, 1] whose spatio-temporal peak lies on the object
    (3 px) — measured on 64 clips: 1.0 (gradcam, xgradcam, layercam), 0.98 (gradcampp), 0.86 (eigencam)."""
    model, x, labels, masks = motion
    from vizlab.metrics import pointing_hits

    for temporal in (("pooled", "per_frame") if name in CHANNEL_WEIGHT_VARIANTS else (None,)):
        options = {"temporal": temporal} if temporal else {}
        sal = vizlab.explain(model, x, labels, method=name, **options)
        assert sal.shape == masks.shape and sal.min() >= 0 and sal.max() <= 1
        hits = pointing_hits(sal, masks, tolerance=3).mean()
        assert hits >= (0.75 if name == "eigencam" else 0.9), (name, temporal, float(hits))


@pytest.mark.slow
def test_scorecam_localises_the_moving_object(motion):
    """64 masked forwards per clip; measured 0.72 (pooled) and 0.69 (per_frame) on 64 clips."""
    model, x, labels, masks = motion
    from vizlab.metrics import pointing_hits

    sal = vizlab.explain(model, x, labels, method="scorecam", batch_size=128)
    assert sal.shape == masks.shape
    assert pointing_hits(sal, masks, tolerance=3).mean() >= 0.55


def test_gradient_free_capture_is_the_layer_output_even_before_an_in_place_relu(tiny2d):
    """features.0 is a conv followed by ReLU(inplace=True): the captured map keeps its negatives."""
    x = torch.randn(2, 3, 16, 16)
    s = build("eigencam", tiny2d, layer="features.0").signals(x, None)
    with torch.no_grad():
        conv = tiny2d.features[0](x)
    assert (conv < 0).any() and torch.allclose(s.acts, conv)
