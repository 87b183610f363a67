"""HR-CAM networks (spec §6.2-6.4): paper shapes, CAMs, weight transfer, checkpoints, memory, the method."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vizlab.errors import CheckpointError, ConfigError, InputError
from vizlab.hrcam import STEP_KEYS
from vizlab.lit.hrcam import HRCAMModule, random_affine
from vizlab.methods import build
from vizlab.models import load_model
from vizlab.models.hrcam import (
    FullModel,
    HalfModel,
    HRCAMConfig,
    check_weights,
    half_keys,
    model_memory_usage,
    stage_shapes,
    transfer_half_weights,
)
from vizlab.models.synthetic import save_state

SMALL = dict(num_classes=4, input_size=32, growth=4, layers_per_block=2, blocks=3, init_filters=8, aux_channels=4,
             class_names=("disc", "square", "triangle", "cross"))


def small_pair(seed: int = 0) -> tuple[HalfModel, FullModel]:
    torch.manual_seed(seed)
    half = HalfModel(HRCAMConfig(**SMALL)).eval()
    full = FullModel(half.config).eval()
    transfer_half_weights(half, full)
    return half, full


def test_paper_configuration_matches_the_spec_table():
    s = stage_shapes()  # one forward pass of the full paper model at 224²
    table = {
        "init": (48, 224, 224), "tr_early": (48, 112, 112),
        "dense_0": (112, 112, 112), "tr_0": (112, 56, 56),
        "dense_1": (176, 56, 56), "tr_1": (176, 28, 28),
        "dense_2": (240, 28, 28), "tr_2": (240, 14, 14),
        "dense_3": (304, 14, 14), "tr_3": (304, 7, 7),
        "dense_4_new": (64, 7, 7),                                     # bottleneck: new maps only
        "up_0": (64, 14, 14), "dense_5_in": (368, 14, 14), "dense_5_new": (64, 14, 14),
        "branch": (64, 14, 14), "a_low": (16, 14, 14), "logits": (398,),
        "up_1": (64, 28, 28), "dense_6_in": (304, 28, 28), "dense_6_new": (64, 28, 28),
        "up_2": (64, 56, 56), "dense_7_in": (240, 56, 56), "dense_7_new": (64, 56, 56),
        "up_3": (64, 112, 112), "dense_8_in": (176, 112, 112), "dense_8": (240, 112, 112),  # full concat
        "a_high": (16, 224, 224), "reconstruction": (3, 224, 224),
    }
    assert {k: s[k] for k in table} == table
    cfg = HRCAMConfig()
    assert (cfg.low_res, cfg.branch_channels) == (14, 64)
    half, full = HalfModel(cfg), FullModel(cfg)
    # W is 16 x M, shared; no bias in convs; BN eps 1.1e-5; ConvT up-sampling with ReLU
    assert full.fc.weight.shape == (398, 16) and full.fc.bias is not None
    convs = [m for m in full.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.bias is None for m in convs)
    assert all(m.eps == 1.1e-5 for m in full.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert isinstance(full.tr_up_early[1], torch.nn.ReLU) and full.tr_up_early[0].stride == (2, 2)
    assert sum(p.numel() for p in half.parameters()) < sum(p.numel() for p in full.parameters())
    assert set(half.state_dict()) == half_keys(full)


def test_cams_are_the_shared_classifier_weights_times_the_features():
    half, full = small_pair()
    x = torch.randn(3, 3, 32, 32)
    cams = full.generate_cams(x)
    feats = full.features(x)
    c = feats["logits"].argmax(1)
    assert torch.equal(cams["classes"], c)
    w = full.fc.weight[c]  # (N, 4)
    assert cams["low"].shape == (3, 4, 4) and cams["high"].shape == (3, 32, 32)
    assert torch.allclose(cams["low"], (feats["a_low"] * w[:, :, None, None]).sum(1), atol=1e-5)
    assert torch.allclose(cams["high"], (feats["a_high"] * w[:, :, None, None]).sum(1), atol=1e-5)
    assert (feats["a_high"] >= 0).all()  # ReLU after the last ConvT
    # the half model gives the same low map and prediction (HalfModel.cam)
    assert torch.allclose(half.cam(x), cams["low"], atol=1e-6)
    assert torch.allclose(half.predict(x), full.predict(x), atol=1e-6)
    probs, idx = full.predict_topk(x, k=10)
    assert probs.shape == (3, 4) and torch.equal(idx[:, 0], c)
    fixed = full.generate_cams(x, classes=2)
    assert torch.equal(fixed["classes"], torch.tensor([2, 2, 2]))
    assert torch.allclose(full.high_res_cam(x, [0, 1, 2]), full.generate_cams(x, torch.tensor([0, 1, 2]))["high"])
    with pytest.raises(InputError, match="out of range"):
        full.low_res_cam(x, classes=7)
    with pytest.raises(InputError, match="divisible by 16"):
        full(torch.randn(1, 3, 40, 40))


def test_weight_transfer_is_verified_and_freezing_keeps_the_classifier():
    half, full = small_pair()
    check_weights(half, full)
    with torch.no_grad():
        full.conv_aux.weight[0, 0] += 1e-3
    with pytest.raises(CheckpointError, match="conv_aux.weight"):
        check_weights(half, full)
    with pytest.raises(CheckpointError, match="growth"):
        transfer_half_weights(half, FullModel(HRCAMConfig(**{**SMALL, "growth": 8, "aux_channels": 8})))
    half, full = small_pair()
    module = HRCAMModule(full, "full", optimizer="adamw", lr=0.05)
    assert not any(p.requires_grad for k, p in full.named_parameters() if k in half_keys(full))
    assert all(p.requires_grad for p in full.expansion_parameters())
    opt = module.configure_optimizers()["optimizer"]
    before = {k: v.clone() for k, v in full.state_dict().items()}
    module.train()
    assert not full.down[0].convs[0][0].training and full.up[0].training  # frozen BN stays in eval mode
    batch = {"image": torch.rand(8, 3, 32, 32), "label": torch.randint(0, 4, (8,))}
    module.log = lambda *a, **k: None
    for _ in range(2):
        loss = module.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = full.state_dict()
    check_weights(half, full)  # parameters and BN running statistics of the classifier unchanged
    changed = [k for k in after if not torch.equal(before[k], after[k])]
    assert changed and all(k.split(".")[0] in ("up", "dense_up", "tr_up_early", "main_output") for k in changed)


def test_checkpoints_carry_their_architecture(tmp_path, monkeypatch):
    monkeypatch.setenv("VIZLAB_CACHE", str(tmp_path / "cache"))
    half, full = small_pair()
    save_state(half, tmp_path / "half.pt")
    save_state(full, tmp_path / "full.pt")
    model = load_model("hrcam_full", checkpoint=tmp_path / "full.pt")
    assert model.info.input_size == 32 and model.info.num_classes == 4
    assert model.info.class_names == SMALL["class_names"] and model.info.mean == (0.5, 0.5, 0.5)
    assert model.info.default_layer == "conv_aux"
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model(x), full(x), atol=1e-6)
    from_full = load_model("hrcam_half", checkpoint=tmp_path / "full.pt")  # the classifier part of a full model
    assert torch.allclose(from_full(x), half(x), atol=1e-6)
    with pytest.raises(CheckpointError, match="holds a HalfModel"):
        load_model("hrcam_full", checkpoint=tmp_path / "half.pt")
    with pytest.raises(CheckpointError, match="has 4 classes but model.num_classes=5"):
        load_model("hrcam_half", checkpoint=tmp_path / "half.pt", num_classes=5)
    with pytest.raises(CheckpointError, match="task=train_half"):
        load_model("hrcam_full")  # empty cache
    save_state(half, tmp_path / "cache" / "hrcam_half.pt")
    assert load_model("hrcam_half").info.input_size == 32
    raw = HalfModel(HRCAMConfig(**{**SMALL, "raw_pixels": True}))
    save_state(raw, tmp_path / "raw.pt")
    info = load_model("hrcam_half", checkpoint=tmp_path / "raw.pt").info
    assert info.mean == (0.0, 0.0, 0.0) and info.std[0] == pytest.approx(1 / 255)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"input_size": 60}, "divisible by 2\\*\\*\\(blocks \\+ 1\\) = 16"),
    ({"growth": 0}, "model.growth must be an integer >= 1"),
    ({"num_classes": 1}, "num_classes must be >= 2"),
])
def test_bad_architecture_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        HRCAMConfig(**{**SMALL, **overrides})


def test_memory_estimate_measures_activations():
    half, full = small_pair()
    one, four = model_memory_usage(full, 1), model_memory_usage(full, 4)
    floats = sum(p.numel() for p in full.parameters()) + sum(b.numel() for n, b in full.named_buffers()
                                                             if n.endswith(("running_mean", "running_var")))
    assert one.parameter_bytes == four.parameter_bytes >= 4 * floats
    assert four.activation_bytes == 4 * one.activation_bytes
    # at least the stages a forward pass must hold: A_high, the reconstruction, the stem output
    assert one.activation_bytes > 4 * 32 * 32 * (4 + 3 + 8)
    assert model_memory_usage(half, 1).activation_bytes < one.activation_bytes
    with pytest.raises(ConfigError, match="batch_size"):
        model_memory_usage(full, 0)


def test_augmentation_identity_and_flip():
    x = torch.rand(4, 3, 16, 16)
    same = random_affine(x, p=0.0, hflip=0.0)
    assert torch.allclose(same, x, atol=1e-5)
    assert torch.allclose(random_affine(x, p=0.0, hflip=1.0), x.flip(-1), atol=1e-5)
    moved = random_affine(x, p=1.0, scale=(0.9, 1.1), translate=0.2, rotate=180, shear=5, hflip=0.0)
    assert moved.shape == x.shape and not torch.allclose(moved, x)


def test_hrcam_method_stages(monkeypatch):
    half, full = small_pair()
    from vizlab.models.wrapper import ModelInfo, ZooModel

    model = ZooModel(full, ModelInfo("hrcam_full", 32, (0.5,) * 3, (0.5,) * 3, "conv_aux", "fc", 4)).eval()
    x = model.normalize(torch.rand(3, 3, 32, 32))
    cams = full.generate_cams(x, classes=1)
    for stage in ("low", "high", "refined"):
        info = build("hrcam", model, stage=stage, pipeline={"hole_area": 16})(x, 1, return_info=True)
        sal = info.saliency
        assert sal.shape == (3, 32, 32) and sal.dtype == torch.float32
        assert 0 <= float(sal.min()) and float(sal.max()) <= 1 and float(sal.max()) > 0
        assert torch.equal(info.target, torch.tensor([1, 1, 1]))
        assert torch.allclose(info.extras["low"], cams["low"]) and torch.allclose(info.extras["high"], cams["high"])
        method = build("hrcam", model, stage=stage, pipeline={"hole_area": 16})
        if stage == "refined":  # the pipeline's steps are kept for the figures, and merged is the saliency
            steps = info.extras["pipeline"]
            assert set(STEP_KEYS) <= set(steps) and torch.equal(steps["merged"].clamp(0, 1), sal)
            assert torch.allclose(steps["image"], (x * 0.5 + 0.5).clamp(0, 1))
        else:
            assert "pipeline" not in info.extras and method.sample_figures(info, 0, x[0]) == {}
    off = build("hrcam", model, figures=False)
    assert off.sample_figures(off(x, 1, return_info=True), 0, x[0]) == {} and "figures=False" in repr(off)
    with pytest.raises(ConfigError, match="method.figures must be true or false"):
        build("hrcam", model, figures="yes")
    low = build("hrcam", model, stage="low")(x, 1)
    assert torch.allclose(low, (lambda m: (m - m.amin((1, 2), True)) / (m.amax((1, 2), True) - m.amin((1, 2), True)))(
        F.interpolate(cams["low"][:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]), atol=1e-5)
    assert build("hrcam", half, stage="low")(x).shape == (3, 32, 32)  # a bare HalfModel works for stage=low
    with pytest.raises(ConfigError, match="needs the expansion path"):
        build("hrcam", half, stage="high")
    with pytest.raises(ConfigError, match="stage must be one of"):
        build("hrcam", model, stage="medium")
    with pytest.raises(ConfigError, match="needs an HR-CAM model"):
        build("hrcam", torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(ConfigError, match="pipeline parameter"):
        build("hrcam", model, stage="refined", pipeline={"holes": 3})
