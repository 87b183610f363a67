"""Fast mode (vizlab.fast_mode): mixed precision, channels-last and torch.compile give the float32
maps and scores within stated tolerances, every method runs under it, compile failures fall back."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import ROOT, TinyCNN, synthetic_model
from omegaconf import OmegaConf

import vizlab
from vizlab.errors import ConfigError
from vizlab.fast_mode import FastMode, accelerate, accelerated, pearson, restore, status
from vizlab.methods.hooks import capture_layer
from vizlab.methods.registry import REGISTRY, method_parameters
from vizlab.metrics import DeletionInsertion

# Tolerances (Pearson r of each map with its float32 map, worst sample). Measured on shapes_cnn /
# motion_cnn: layer methods 0.9999+, input-gradient methods 0.98+ (bf16) / 0.996+ (fp16), the
# optimising methods 0.99+ after a few iterations; channels-last changes only the summation order.
MIN_PEARSON = {"bf16-mixed": 0.95, "16-mixed": 0.98}
CHANNELS_LAST_MAX_DIFF = 1e-4
QUICK = {"max_iter": 3, "steps": 6, "n_samples": 3, "progress": False, "core_start": 2}


def quick_options(cls) -> dict:
    """Small iteration / step counts for whichever of these options the method takes."""
    accepted = method_parameters(cls.name)  # the options dataclass's fields for the extremal family
    return {k: v for k, v in QUICK.items() if k in accepted}


def synthetic_batch(model, n: int) -> torch.Tensor:
    from vizlab.data import build_dataset

    kind = "synthetic_motion" if model.info.is_video else "synthetic_shapes"
    cfg = OmegaConf.create({"name": kind, "num_samples": n, "size": model.info.input_size, "seed": 7,
                            **({"frames": model.info.frames} if model.info.is_video else {})})
    ds = build_dataset(cfg, model.info.input_size, model.info.is_video, model.info.frames)
    return model.normalize(torch.stack([ds[i]["image"] for i in range(n)]))


def methods_for(dims: int) -> list[str]:
    return sorted(name for name, cls in REGISTRY.items() if cls.any_model and cls.input_dims in (None, dims))


def test_fast_mode_options_are_checked():
    assert FastMode(precision="32-true").precision == "32" and FastMode(precision=32).dtype is None
    assert FastMode(precision="bf16-mixed").dtype is torch.bfloat16 and FastMode(precision="16-mixed").dtype is torch.float16
    assert not FastMode().enabled and FastMode(channels_last=True).enabled
    with pytest.raises(ConfigError, match="hardware.precision must be one of 32, bf16-mixed, 16-mixed"):
        FastMode(precision="64")
    with pytest.raises(ConfigError, match="hardware.compile must be"):
        FastMode(compile="fastest")
    with pytest.raises(ConfigError, match="not a torch.compile backend"):
        FastMode(compile=True, compile_backend="nope")
    hw = OmegaConf.load(ROOT / "conf/hardware/gpu_fast.yaml")
    assert FastMode.from_config(hw) == FastMode("bf16-mixed", True, True, "inductor")
    assert FastMode.from_config(OmegaConf.load(ROOT / "conf/hardware/cpu.yaml")) == FastMode()


def test_autocast_wraps_only_the_forward(tiny2d):
    """Outputs and captured activations are float32; weights keep their dtype; restore undoes it all."""
    x = torch.randn(2, 3, 16, 16)
    ref = tiny2d(x)
    accelerate(tiny2d, FastMode(precision="bf16-mixed", channels_last=True))
    with capture_layer(tiny2d.features[2], start_graph=True) as cap:
        out = tiny2d(x)
    assert out.dtype == torch.float32 and cap.activation.dtype == torch.float32
    assert tiny2d.features[0].weight.dtype == torch.float32
    assert tiny2d.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert (out - ref).abs().max() < 0.05 and not torch.equal(out, ref)  # really ran in bfloat16
    assert status(tiny2d)["precision"] == "bf16-mixed"
    restore(tiny2d)
    assert "forward" not in tiny2d.__dict__ and tiny2d.features[0].weight.is_contiguous()
    assert torch.equal(tiny2d(x), ref)


def check_methods_in_fast_mode(model, x: torch.Tensor, names: list[str], precision: str) -> None:
    """Each method under `precision` and under channels-last: float32 maps in [0, 1] of the fp32 shape,
    within MIN_PEARSON (precision) / CHANNELS_LAST_MAX_DIFF (channels-last) of the fp32 maps."""
    for name in names:
        opts = quick_options(REGISTRY[name])
        torch.manual_seed(0)
        ref = vizlab.explain(model, x, None, method=name, **opts)
        for fast in (FastMode(precision=precision), FastMode(channels_last=True)):
            with accelerated(model, fast):
                torch.manual_seed(0)
                info = vizlab.explain(model, x, None, method=name, return_info=True, **opts)
            sal = info.saliency
            assert sal.shape == ref.shape and sal.dtype == torch.float32, name
            assert torch.isfinite(sal).all() and sal.min() >= 0 and sal.max() <= 1, name
            assert info.logits.dtype == torch.float32, name
            if fast.channels_last:
                assert (sal - ref).abs().max() <= CHANNELS_LAST_MAX_DIFF, name
            else:
                r = pearson(sal, ref).min().item()
                assert r >= MIN_PEARSON[precision], f"{name}: Pearson {r:.4f} with fp32 < {MIN_PEARSON[precision]}"
        assert "forward" not in model.__dict__


def test_layer_and_gradient_methods_in_bf16_and_channels_last(request, monkeypatch):
    model = synthetic_model(request, monkeypatch, "shapes_cnn")
    check_methods_in_fast_mode(model, synthetic_batch(model, 2), ["gradcam", "gradients", "extremal"], "bf16-mixed")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_every_image_method_in_mixed_precision_and_channels_last(request, monkeypatch, precision):
    model = synthetic_model(request, monkeypatch, "shapes_cnn")
    check_methods_in_fast_mode(model, synthetic_batch(model, 3), methods_for(4), precision)


@pytest.mark.slow
def test_every_clip_method_in_bf16_and_channels_last(request, monkeypatch):
    model = synthetic_model(request, monkeypatch, "motion_cnn")
    check_methods_in_fast_mode(model, synthetic_batch(model, 2), methods_for(5), "bf16-mixed")


def test_deletion_insertion_in_fast_mode(request, monkeypatch):
    """Scores are computed in float32 from the model's (autocast) logits: AUCs within 0.02 of fp32."""
    model = synthetic_model(request, monkeypatch, "shapes_cnn")
    x = synthetic_batch(model, 2)
    info = vizlab.explain(model, x, None, method="gradcam", return_info=True)
    ref = DeletionInsertion(model, steps=8).evaluate(x, info.saliency, info.target)
    for fast in (FastMode(precision="bf16-mixed"), FastMode(precision="16-mixed", channels_last=True)):
        with accelerated(model, fast):
            got = DeletionInsertion(model, steps=8).evaluate(x, info.saliency, info.target)
        for key in ("deletion_auc", "insertion_auc"):
            assert got[key].dtype == torch.float32
            assert (got[key] - ref[key]).abs().max() <= 0.02, (fast, key)


def test_compile_runs_compiled_and_layer_hooks_run_eager(request, monkeypatch):
    """aot_eager traces like inductor without generating code: input-gradient methods run compiled,
    Grad-CAM (per-call layer hook) runs eagerly, and both equal the float32 maps."""
    model = synthetic_model(request, monkeypatch, "shapes_cnn")
    x = synthetic_batch(model, 2)
    ref_g = vizlab.explain(model, x, None, method="gradients")
    ref_c = vizlab.explain(model, x, None, method="gradcam")
    with accelerated(model, FastMode(compile=True, compile_backend="aot_eager")):
        got_g = vizlab.explain(model, x, None, method="gradients")
        compiled = status(model)["compiled_calls"]
        got_c = vizlab.explain(model, x, None, method="gradcam")
        st = status(model)
    assert compiled >= 1 and st["eager_calls"] >= 1 and st["compile_error"] is None
    assert (got_g - ref_g).abs().max() < 1e-4 and (got_c - ref_c).abs().max() < 1e-5


def test_compile_failure_falls_back_with_a_warning():
    @torch._dynamo.register_backend
    def vizlab_test_unlowerable(gm, example_inputs):
        raise NotImplementedError("cannot lower aten.made_up_op")

    torch.manual_seed(0)
    net = TinyCNN(2).eval()
    x = torch.randn(2, 3, 16, 16)
    ref = net(x)
    accelerate(net, FastMode(compile=True, compile_backend="vizlab_test_unlowerable"))
    with pytest.warns(UserWarning, match="torch.compile could not compile the model .*made_up_op.*running it uncompiled"):
        out = net(x)
    assert torch.equal(out, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        assert torch.equal(net(x), ref)
    st = status(net)
    assert st["compiled_calls"] == 0 and st["eager_calls"] == 2 and "made_up_op" in st["compile_error"]
    restore(net)


def test_explain_task_records_fast_mode_and_keeps_fp32_hash_apart(tmp_path, request, monkeypatch):
    """task=explain with hardware.precision / channels_last: results.json says so, the maps' scores stay
    close to the float32 run's, and a bf16 run is not mistaken for a finished fp32 job."""
    from hydra import compose, initialize_config_dir

    from vizlab.tasks.explain import config_hash, run_explain

    synthetic_model(request, monkeypatch, "shapes_cnn")
    base = ["model=shapes_cnn", "dataset=synthetic_shapes", "dataset.num_samples=3", "logger=none",
            "metric.deletion_insertion.steps=8", "task.save_overlays=false"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        fp32 = compose("config", overrides=base)
        fast = compose("config", overrides=[*base, "hardware.precision=bf16-mixed", "hardware.channels_last=true"])
        layout = compose("config", overrides=[*base, "hardware.channels_last=true"])
    assert config_hash(fp32) != config_hash(fast) and config_hash(fp32) == config_hash(layout)
    ref = run_explain(fp32, tmp_path / "fp32")
    got = run_explain(fast, tmp_path / "fast")
    assert got["fast_mode"] == {"precision": "bf16-mixed", "channels_last": True, "compile": False}
    assert ref["fast_mode"]["precision"] == "32"
    for key in ("deletion_auc", "insertion_auc"):
        assert got["summary"][key] == pytest.approx(ref["summary"][key], abs=0.02)
