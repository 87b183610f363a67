"""Image extremal perturbation: the building blocks (mask generator, pyramid) and the batched
optimisation against a plain per-image re-statement of TorchRay's algorithm (tests/ep_reference.py)
and against the installed TorchRay itself; batching, areas, early stopping, localisation on
synthetic shapes, configuration errors and the explain loop."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from conftest import PYTHON, TinyCNN, run_cli, synthetic_model
from ep_reference import PlainMaskGenerator, plain_blur, plain_extremal, plain_pyramid

import vizlab
from vizlab.errors import ConfigError, InputError
from vizlab.methods import build
from vizlab.methods.perturbation import MaskGenerator, PerturbationPyramid
from vizlab.methods.perturbation.objectives import area_loss

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchray's importlib.resources call
        from torchray.attribution import extremal_perturbation as torchray_ep
except ImportError:  # pragma: no cover - optional reference
    torchray_ep = None

needs_torchray = pytest.mark.skipif(torchray_ep is None, reason="torchray not installed (pip install --no-deps "
                                                                  "torchray==1.0.0.2)")
# a valid generator for 32-40 px test images, with the originals' blur and no relaxed warm-up (what the plain
# reference algorithm and TorchRay do)
SMALL = {"step": 4, "sigma": 12.0, "max_blur": 20.0, "area_warmup": 0, "progress": False}


@pytest.fixture
def stepwise(monkeypatch):
    """Generate masks step by step as TorchRay does (same arithmetic) instead of the fused function."""
    from vizlab.methods.perturbation.method import PerturbationMethod

    monkeypatch.setattr(PerturbationMethod, "fused_generator", False)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TinyCNN(2, classes=5).eval()


# ----------------------------------------------------------------------------- mask generator
@pytest.mark.parametrize(("size", "step", "sigma", "expect"), [
    (224, 7, 21, {"padding": 7, "radius": 4, "in": 32, "mid": 38, "up": 266, "out": 260}),
    (112, 7, 11, {"padding": 5, "radius": 3, "in": 16, "mid": 20, "up": 140, "out": 134}),
    (224, 7, 23, {"padding": 8, "radius": 5, "in": 32, "out": 260}),
])
def test_mask_generator_sizes_are_the_worked_examples(size, step, sigma, expect):
    g = MaskGenerator((size, size), step, sigma)
    got = {"padding": g.padding, "radius": g.radius, "in": g.shape_in[0], "mid": g.shape_mid[0],
           "up": g.shape_up[0], "out": g.shape_out[0]}
    assert {k: got[k] for k in expect} == expect
    assert g.weight.shape == (1, (2 * g.radius + 1) ** 2, g.shape_out[0], g.shape_out[1])
    mask, full = g.generate(torch.ones(1, 1, *g.shape_in))
    assert mask.shape == (1, 1, size, size) and full.shape == (1, 1, g.shape_out[0], g.shape_out[1])
    assert mask.mean() > 0.95 and mask.min() > 0.8 and mask.max() <= 1  # all-ones parameters: ≈ 1 everywhere
    mask, full = g.generate(torch.zeros(1, 1, *g.shape_in))
    assert full.abs().max() == 0


@pytest.mark.parametrize(("shape", "step", "sigma", "pooling"), [
    ((40, 40), 4, 12.0, "softmax"), ((36, 52), 3, 9.0, "softmax"), ((112, 112), 7, 11.0, "softmax"),
    ((40, 40), 4, 12.0, "sigmoid"), ((40, 40), 4, 12.0, "sum"),
])
def test_mask_generator_matches_plain_generator_values_and_gradients(shape, step, sigma, pooling):
    ours, plain = MaskGenerator(shape, step, sigma, pooling=pooling), PlainMaskGenerator(shape, step, sigma)
    assert torch.equal(ours.weight, plain.weight)
    torch.manual_seed(1)
    params = torch.rand(3, 1, *ours.shape_in)
    a, b = params.clone().requires_grad_(True), params.clone().requires_grad_(True)
    (mask_a, full_a), (mask_b, full_b) = ours.generate(a), plain.generate(b, pooling)
    assert torch.allclose(full_a, full_b, atol=1e-5) and torch.allclose(mask_a, mask_b, atol=1e-5)
    probe = torch.randn_like(full_a)
    (ga,), (gb,) = torch.autograd.grad((full_a * probe).sum(), a), torch.autograd.grad((full_b * probe).sum(), b)
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-4 * gb.abs().max())


@needs_torchray
def test_mask_generator_matches_torchray():
    for shape, step, sigma in (((224, 224), 7, 21), ((112, 112), 7, 11)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchRay calls torch.meshgrid without `indexing`
            theirs = torchray_ep.MaskGenerator(shape, step, sigma)
        ours = MaskGenerator(shape, step, sigma)
        assert ours.shape_out == theirs.shape_out and torch.equal(ours.weight, theirs.weight)
        params = torch.rand(2, 1, *ours.shape_in)
        assert torch.allclose(ours.generate(params)[1], theirs.generate(params)[1], atol=1e-5)


def test_mask_generator_rejects_a_margin_too_small_for_the_image():
    with pytest.raises(ConfigError, match="too small to crop the input height of 48 px"):
        MaskGenerator((48, 48), 4, 6)


# ----------------------------------------------------------------------------- pyramid
def test_pyramid_levels_and_interpolation():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 30, 34)
    pyr = PerturbationPyramid(x)
    assert pyr.pyramid.shape == (2, 8, 3, 30, 34)
    assert torch.allclose(pyr.pyramid, plain_pyramid(x), atol=1e-6)
    assert torch.equal(pyr.pyramid[:, 7], x)
    ones, zeros, half = (torch.full((2, 1, 30, 34), v) for v in (1.0, 0.0, 0.5))
    assert torch.equal(pyr.apply(ones), x)  # m = 1 keeps the input exactly
    assert torch.allclose(pyr.apply(zeros), plain_blur(x, torch.tensor(20.0)), atol=1e-6)  # m = 0: σ = 20
    assert torch.allclose(pyr.apply(half), (pyr.pyramid[:, 3] + pyr.pyramid[:, 4]) / 2, atol=1e-6)  # 3.5
    # masks for other rows of the pyramid through `source`
    picked = pyr.apply(torch.cat([zeros, ones])[:3], torch.tensor([1, 0, 1]))
    assert torch.equal(picked[2], x[1]) and torch.allclose(picked[0], pyr.pyramid[1, 0])
    fade = PerturbationPyramid(x, kind="fade")
    assert torch.equal(fade.apply(zeros), torch.zeros_like(x)) and torch.equal(fade.apply(ones), x)


@needs_torchray
def test_pyramid_matches_torchray_perturbation():
    x = torch.randn(1, 3, 40, 40)
    for kind in ("blur", "fade"):
        theirs = torchray_ep.Perturbation(x, type=kind)
        ours = PerturbationPyramid(x, kind=kind)
        assert torch.allclose(ours.pyramid[0], theirs.pyramid, atol=1e-6)
        mask = torch.rand(4, 1, 40, 40)
        assert torch.allclose(ours.apply(mask, torch.zeros(4, dtype=torch.long)), theirs.apply(mask), atol=1e-6)


# ----------------------------------------------------------------------------- the optimisation
CASES = [
    {"variant": "preserve", "reward": "simple", "perturbation": "blur"},
    {"variant": "delete", "reward": "contrastive", "perturbation": "fade"},
    {"variant": "dual", "reward": "log", "perturbation": "blur"},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["variant"])
@pytest.mark.parametrize("strict", [False, True], ids=["fixed", "strict"])
def test_batched_images_and_areas_match_the_plain_per_image_algorithm(net, case, strict, stepwise):
    """N images × A areas in one optimisation = the plain algorithm run image by image."""
    torch.manual_seed(3)
    x, targets, areas = torch.randn(2, 3, 40, 40), [1, 4], [0.1, 0.3]
    info = build("extremal", net, areas=areas, max_iter=12, strict_original=strict, **SMALL, **case)(
        x, targets, return_info=True)
    assert info.extras["masks"].shape == (2, 2, 40, 40) and info.extras["history"].shape == (2, 2, 2, 12)
    for i, t in enumerate(targets):
        masks, hist = plain_extremal(net, x[i:i + 1], t, areas, iters=12, step=4, sigma=12.0, stale=strict,
                                     strict=strict, reward=case["reward"], variant=case["variant"],
                                     kind=case["perturbation"])
        assert torch.allclose(info.extras["masks"][i], masks, atol=1e-5)
        assert torch.allclose(info.extras["history"][i], hist, rtol=1e-5, atol=1e-4)
    assert torch.allclose(info.saliency, info.extras["masks"].mean(1))  # saliency = mean over areas
    assert torch.equal(info.raw, info.extras["masks"]) and info.target.tolist() == targets


@needs_torchray
@pytest.mark.parametrize("case", CASES[:2] + [{"variant": "dual", "reward": "simple", "perturbation": "fade"}],
                         ids=lambda c: c["variant"])
def test_strict_original_reproduces_torchray(net, case, stepwise):
    reward_func = torchray_ep.contrastive_reward if case["reward"] == "contrastive" else torchray_ep.simple_reward
    torch.manual_seed(4)
    x, targets, areas = torch.randn(2, 3, 40, 40), [2, 0], [0.05, 0.2]
    info = build("extremal", net, areas=areas, max_iter=20, strict_original=True, **SMALL, **case)(
        x, targets, return_info=True)
    for i, t in enumerate(targets):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            masks, hist = torchray_ep.extremal_perturbation(
                net, x[i:i + 1], t, areas=areas, max_iter=20, step=4, sigma=12.0, variant=case["variant"],
                perturbation=case["perturbation"], reward_func=reward_func)
        assert torch.allclose(info.extras["masks"][i], masks[:, 0], atol=1e-5)
        ours = info.extras["history"][i]  # TorchRay's hist holds the negated terms
        assert torch.allclose(ours[:, 1], -hist[:, 1], rtol=1e-5, atol=1e-4)
        if case["reward"] == "contrastive":
            # TorchRay's contrastive_reward broadcasts (A,) − (A, 1) to A×A, so each area's logged
            # reward uses the mean of all areas' runner-up logits; the sum over areas (the energy,
            # hence the masks) is unchanged.
            assert torch.allclose(ours[:, 0].sum(0), -hist[:, 0].sum(0), rtol=1e-5, atol=1e-4)
        else:
            assert torch.allclose(ours[:, 0], -hist[:, 0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["variant"])
def test_fused_generator_gives_the_same_optimisation(net, case, monkeypatch):
    """The default fused generator differs from TorchRay's arithmetic by float rounding (~2e-6 per
    mask); over 12 iterations that stays far below one SGD step (~5e-2 max, ~1.5e-2 mean here)."""
    from vizlab.methods.perturbation.method import PerturbationMethod

    torch.manual_seed(3)
    x, targets = torch.randn(2, 3, 40, 40), [1, 4]
    method = build("extremal", net, areas=[0.1, 0.3], max_iter=12, **SMALL, **case)
    fused = method(x, targets)
    monkeypatch.setattr(PerturbationMethod, "fused_generator", False)
    diff = (method(x, targets) - fused).abs()
    assert diff.max() < 2e-3 and diff.mean() < 2e-4, (diff.max(), diff.mean())


def test_batch_equals_per_sample_runs_and_chunks(net):
    torch.manual_seed(5)
    x, targets = torch.randn(3, 3, 32, 32), [4, 0, 2]
    method = build("extremal", net, areas=[0.05, 0.2], max_iter=12, **SMALL)
    batched = method(x, targets, return_info=True)
    for i, t in enumerate(targets):
        single = method(x[i:i + 1], t, return_info=True)
        assert torch.allclose(single.extras["masks"][0], batched.extras["masks"][i], atol=1e-5)
        assert torch.allclose(single.extras["history"][0], batched.extras["history"][i], rtol=1e-5, atol=1e-4)
    chunked = build("extremal", net, areas=[0.05, 0.2], max_iter=12, batch_size=2, **SMALL)(x, targets)
    assert torch.allclose(chunked, batched.saliency, atol=1e-5)


def test_every_area_converges_to_its_target(net):
    """The area term drives the full (margin-padded) mask to the requested fraction, per area."""
    torch.manual_seed(6)
    areas = [0.05, 0.2, 0.4]
    info = build("extremal", net, areas=areas, max_iter=100, **SMALL)(torch.randn(2, 3, 32, 32), [1, 2],
                                                                       return_info=True)
    full = info.extras["full_area"]
    assert (full - torch.tensor(areas)).abs().max() < 0.015, full
    assert torch.all(info.extras["area"][:, 1:] > info.extras["area"][:, :-1])  # bigger area, bigger mask
    reg = info.extras["history"][:, :, 1]
    assert torch.all(reg[..., -1] < 0.2 * reg[..., 0])  # the regulariser fell by > 5× (while λ grew 1.4×)


def test_history_starts_at_the_area_penalty_of_the_all_ones_mask(net):
    x = torch.randn(1, 3, 32, 32)
    info = build("extremal", net, areas=[0.1], max_iter=3, **SMALL)(x, 3, return_info=True)
    gen = MaskGenerator((32, 32), 4, 12.0)
    full = gen.generate(torch.ones(1, 1, *gen.shape_in))[1]
    size = full.numel()
    expected = 300 * area_loss(full.view(1, 1, -1), torch.tensor([int(size * 0.9)]))
    assert torch.allclose(info.extras["history"][0, 0, 1, 0], expected[0], rtol=1e-5)
    mask = gen.generate(torch.ones(1, 1, *gen.shape_in))[0]
    with torch.no_grad():  # model term at t = 0: −logit of the jittered (flipped) image under the first mask
        logit = net(PerturbationPyramid(x).apply(mask).flip(-1))[0, 3]
    assert torch.allclose(info.extras["history"][0, 0, 0, 0], -logit, rtol=1e-5, atol=1e-6)


def test_early_stopping_per_mask(net):
    torch.manual_seed(7)
    x, targets = torch.randn(2, 3, 32, 32), [1, 3]
    method = build("extremal", net, areas=[0.1, 0.3], max_iter=60, early_stop=True, patience=3, tol=0.05, **SMALL)
    info = method(x, targets, return_info=True)
    iters = info.extras["iterations"]
    assert iters.shape == (2, 2) and iters.max() < 60 and iters.min() >= 4
    hist = info.extras["history"]
    assert hist.shape[-1] == iters.max()
    for i in range(2):
        for a in range(2):
            n = int(iters[i, a])
            assert torch.isfinite(hist[i, a, :, :n]).all() and torch.isnan(hist[i, a, :, n:]).all()
    # a mask that stopped after n iterations equals a run of exactly n iterations
    i, a = divmod(int(iters.flatten().argmin()), 2)
    n = int(iters[i, a])
    plain = build("extremal", net, areas=[[0.1, 0.3][a]], max_iter=n, **SMALL)(x[i:i + 1], targets[i])
    assert torch.allclose(plain[0], info.extras["masks"][i, a], atol=1e-5)
    # and batched early stopping equals per-sample early stopping
    single = method(x[1:], targets[1], return_info=True)
    assert torch.equal(single.extras["iterations"][0], iters[1])
    assert torch.allclose(single.extras["masks"][0], info.extras["masks"][1], atol=1e-5)


def test_progress_bar_and_model_state(net, capfd):
    for p in net.parameters():
        p.requires_grad_(True)
    net.train()
    x = torch.randn(1, 3, 32, 32)
    build("extremal", net, max_iter=2, step=4, sigma=12.0, progress=True)(x, 1)
    assert "extremal 1×1 masks" in capfd.readouterr().err
    build("extremal", net, max_iter=2, **SMALL)(x, 1)
    assert capfd.readouterr().err == ""
    assert net.training and all(p.requires_grad and p.grad is None for p in net.parameters())
    for module in net.modules():
        assert not module._forward_hooks and not module._backward_hooks


# ----------------------------------------------------------------------------- errors and the explain loop
@pytest.mark.parametrize(("options", "match"), [
    ({"areas": [0.0]}, "strictly between 0 and 1"),
    ({"areas": [0.1, 1.5]}, r"got 1\.5 in areas=\[0\.1, 1\.5\]"),
    ({"areas": []}, "at least one target area"),
    ({"variant": "keep"}, "variant must be one of 'preserve', 'delete', 'dual'; got 'keep'"),
    ({"perturbation": "noise"}, "perturbation must be one of 'blur', 'fade'"),
    ({"reward": "margin"}, "reward must be one of 'simple', 'contrastive', 'log'"),
    ({"max_iter": 0}, "max_iter must be an integer >= 1; got 0"),
    ({"step": 2.5}, "step must be an integer"),
    ({"momentum": 1.0}, "momentum must be a number >= 0 and < 1"),
    ({"pooling": "max"}, "pooling must be one of 'softmax', 'sigmoid', 'sum'"),
    ({"stpes": 3}, "no option"),
])
def test_bad_options_raise_one_clear_config_error(net, options, match):
    with pytest.raises(ConfigError, match=match):
        build("extremal", net, **options)


def test_options_are_one_frozen_dataclass_per_default_set(net):
    """Issue 14 item 4: the family's options live in ExtremalOptions / VideoOptions / STEPOptions;
    method_parameters reads their fields, an instance and keyword overrides build the same method."""
    import dataclasses

    from vizlab.methods import EP2D, EP3D, STEP, ExtremalPerturbation, method_parameters
    from vizlab.methods.perturbation.options import ExtremalOptions, STEPOptions, VideoOptions

    assert ExtremalPerturbation.options_type is ExtremalOptions
    assert EP2D.options_type is EP3D.options_type is VideoOptions and STEP.options_type is STEPOptions
    for name, cls in (("extremal", ExtremalOptions), ("ep2d", VideoOptions), ("step", STEPOptions)):
        assert method_parameters(name) == {f.name: f.default for f in dataclasses.fields(cls)}
    # per-class defaults: the seeds' numbers, not copies of the image ones
    image, video, step = ExtremalOptions(), VideoOptions(), STEPOptions()
    assert (image.reward, image.max_iter, image.lr, image.jitter, image.area_growth) == ("simple", 800, 0.01, True, 1.0035)
    assert (video.reward, video.max_iter, video.lr, video.jitter, video.area_growth, video.reward_weight) == \
        ("log", 2000, 0.05, False, 1.0, 100.0)
    assert (step.area_growth, step.reward_weight, step.core_size, step.core_start) == (1.0008668, 1.0, None, None)
    assert set(method_parameters("step")) - set(method_parameters("ep3d")) == {
        "core_weight", "core_start", "core_size", "core_shape", "core_count", "core_shuffle", "seed"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.max_iter = 3  # type: ignore[misc]
    # an instance, keyword overrides, or both
    options = ExtremalOptions(areas=[0.05, 0.2], max_iter=7)
    assert options.areas == (0.05, 0.2)
    by_instance = ExtremalPerturbation(net, options)
    by_keywords = ExtremalPerturbation(net, areas=[0.05, 0.2], max_iter=7)
    assert by_instance.options == by_keywords.options and by_instance.schedule == by_keywords.schedule
    both = ExtremalPerturbation(net, options, lr=0.2)
    assert (both.options.max_iter, both.schedule.lr, options.lr) == (7, 0.2, 0.01)
    # checked on creation, with the option's name; the wrong options class is refused
    with pytest.raises(ConfigError, match="max_iter must be an integer >= 1; got 0"):
        ExtremalOptions(max_iter=0)
    with pytest.raises(ConfigError, match=r"method\.lr must be a number"):
        VideoOptions(lr="fast")
    with pytest.raises(ConfigError, match="options must be a STEPOptions; got ExtremalOptions"):
        STEP(net, ExtremalOptions())
    with pytest.raises(ConfigError, match=r"ExtremalOptions has no option\(s\) \['core_size'\]"):
        ExtremalPerturbation(net, core_size=(3, 3, 3))


def test_wrong_input_rank_and_model_kind(net, effnet):
    with pytest.raises(InputError, match=r"explains images \(N, C, H, W\).*use method=ep2d, ep3d or step"):
        build("extremal", net, max_iter=1)(torch.randn(1, 3, 4, 32, 32))
    with pytest.raises(InputError, match=r"explains clips \(N, C, T, H, W\).*use method=extremal"):
        build("ep3d", net, max_iter=1)(torch.randn(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="does not fit model 'efficientnet_lite0'.*use method=extremal"):
        build("step", effnet)


def test_preserved_region_covers_the_object_on_synthetic_shapes(request, monkeypatch):
    """shapes_cnn on 40 fresh images: the peak of the (smoothed, as in TorchRay's pointing benchmark)
    preservation mask lies on the object for >= 80%, and the mask is higher on than off the object."""
    from torch.utils.data import DataLoader

    from vizlab.data.synthetic_shapes import SyntheticShapes
    from vizlab.metrics import pointing_hits

    model = synthetic_model(request, monkeypatch, "shapes_cnn")
    batch = next(iter(DataLoader(SyntheticShapes(40, seed=777), batch_size=40)))
    x = model.normalize(batch["image"])
    info = vizlab.explain(model, x, batch["label"], method="extremal", areas=[0.05], max_iter=60, step=3, sigma=9.0,
                          lr=0.05, reward="contrastive", smooth=0.05, progress=False, return_info=True)
    hits = pointing_hits(info.saliency, batch["mask"], tolerance=3)
    assert hits.mean() >= 0.8, hits.mean()
    inside = (info.saliency * batch["mask"]).flatten(1).sum(1) / batch["mask"].flatten(1).sum(1)
    outside = (info.saliency * ~batch["mask"]).flatten(1).sum(1) / (~batch["mask"]).flatten(1).sum(1)
    assert (inside > outside).float().mean() >= 0.9


def test_explain_loop_runs_extremal(tmp_path):
    """CLI end to end with W&B: per-area raw masks, per-sample details, the history figure and the
    mean optimisation curves in results.json and in the offline W&B run (read back)."""
    import numpy as np

    from vizlab.loggers import read_offline_run

    proc = run_cli(PYTHON, "run.py", "method=extremal", "method.max_iter=3", "method.areas=[0.05,0.2]",
                   "method.progress=false", "dataset.images=[chelsea,coffee]", "task.batch_size=2", "metric=none",
                   "logger=wandb", "task.save_maps=true", f"paths.output_root={tmp_path}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = tmp_path.rglob("results.json")
    results = json.loads(path.read_text())
    assert results["method"]["name"] == "extremal" and results["method"]["areas"] == [0.05, 0.2]
    sample = results["samples"][0]
    files = sample["files"]
    raw = np.load(path.parent / next(f for f in files if f.endswith("_raw.npy")))
    assert raw.shape == (2, 224, 224)  # the per-area masks
    assert np.allclose(np.load(path.parent / next(f for f in files if f.endswith("_saliency.npy"))), raw.mean(0),
                       atol=1e-6)
    details = sample["details"]
    assert details["areas"] == [0.05, 0.2] and details["iterations"] == [3, 3]
    assert np.allclose(details["mask_area"], raw.reshape(2, -1).mean(1), atol=1e-5)
    figure = path.parent / sample["figures"]["history"]
    assert figure.is_file() and figure.name.endswith("_history.png") and str(figure.relative_to(path.parent)) in files
    # mean curves over the 2 images: 3 iterations per (term, area); the last regulariser equals the
    # mean of the samples' final regulariser
    curves = results["curves"]
    assert set(curves) == {f"{t}_area_{a}" for t in ("model_term", "regulariser") for a in ("0.05", "0.2")}
    assert all(len(v) == 3 for v in curves.values())
    finals = [s["details"]["final_regulariser"][1] for s in results["samples"]]
    assert curves["regulariser_area_0.2"][-1] == pytest.approx(np.mean(finals), rel=1e-5)

    (run_dir,) = path.parent.glob("wandb/offline-run-*")
    run = read_offline_run(run_dir)
    rows = [r for r in run["history"] if "curves/iteration" in r]
    assert [r["curves/iteration"] for r in rows] == [0, 1, 2]
    assert [r["curves/model_term_area_0.05"] for r in rows] == pytest.approx(curves["model_term_area_0.05"])
    assert run["summary"]["figures/history/count"] == 2
    assert sum(f.startswith("media/images/figures/history") for f in run["files"]) == 2
    (table,) = [f for f in run["files"] if f.endswith(".table.json")]
    table = json.loads((run_dir / "files" / table).read_text())
    assert "iterations[0]" in table["columns"] and "final_model_term[1]" in table["columns"]

    bad = run_cli(PYTHON, "run.py", "method=extremal", "method.areas=[1.5]", "logger=none",
                  f"paths.output_root={tmp_path / 'bad'}")
    assert bad.returncode != 0 and "Every area must be a fraction strictly between 0 and 1" in bad.stderr
    assert "Traceback" not in bad.stderr
