"""Feature visualisation on real networks: the embedded EfficientNet-Lite0 on the six sample photos
(128 px, two clusters), another 2-D zoo net (ResNet-18, random weights) and a 3-D one (motion_cnn
on synthetic motion clips)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import synthetic_model

from vizlab.data import SampleImages, build_synthetic_motion
from vizlab.errors import ConfigError, InputError, LayerNotFoundError
from vizlab.featvis import FeatureTaps, Octave, encode, generate, loss_terms, visualise_features
from vizlab.featvis.optimise import GenerateOptions, activation_weights
from vizlab.featvis.robust import AdaptiveRobustLoss

SIZE = 128
LAYER = "blocks.6"               # the last block's output (linear, so activations are not capped like bn2's ReLU6)
FAST = {"layer": LAYER, "clusters": 2, "members": 3, "target_channels": 20, "embedding": "pca"}
FACTOR = 2.0                     # generated / real members, mean activation of the target channels


@pytest.fixture(scope="module")
def photos():
    ds = SampleImages(SIZE, ["chelsea", "coffee", "astronaut", "rocket", "cat", "hubble_deep_field"])
    return torch.stack([ds[i]["image"] for i in range(len(ds))]), ds.names


@pytest.fixture(scope="module")
def taps(effnet, photos):
    return FeatureTaps(effnet, LAYER).probe(effnet.normalize(photos[0][:1]))


@pytest.fixture(scope="module")
def run36(effnet, photos):
    """36 iterations of the demo octave (scale 1.2, its schedules over 36 steps), two clusters."""
    images, names = photos
    return visualise_features(effnet, images, names, iterations=36, save_every=12, **FAST)


def test_loss_falls_and_target_channels_beat_the_real_members(run36):
    gen = run36.generation
    loss = gen.history["loss"]
    assert loss[-5:].mean() < loss[:5].mean() - 0.2 * loss[:5].abs().mean()
    acts = run36.activations()
    # the stated factor: each generated image drives its cluster's target channels ≥ 2× harder than
    # the cluster's real member images do on average
    assert (acts["generated"] > FACTOR * acts["members"]).all(), acts
    assert (acts["generated"] > acts["start"]).all()
    assert run36.layer == LAYER and run36.penalty_layer == "blocks.6.0.conv_pwl"
    assert sorted(gen.snapshots) == [0, 12, 24, 36]
    assert gen.images.shape == (2, 3, SIZE, SIZE) and 0 <= gen.images.min() and gen.images.max() <= 1
    # float images throughout: the final images are not on the uint8 grid
    assert not torch.allclose(gen.images * 255, (gen.images * 255).round(), atol=1e-3)
    # the robust loss's α and scale adapted (the original re-created them every iteration)
    assert not torch.allclose(gen.alpha, torch.ones_like(gen.alpha))
    records = run36.cluster_records()
    assert [len(r["members"]) for r in records] == [3, 3] and all(len(r["channels"]) == 20 for r in records)
    assert sum(len(r["assigned"]) for r in records) == 6
    assert gen.schedule["lr"][0] == pytest.approx(0.5) and gen.schedule["lr"][-1] == pytest.approx(0.08)


def test_same_seed_same_images(effnet, photos):
    images, names = photos
    octave = [Octave(window_step=2, iterations=4)]        # new jittered crops at iterations 2 and 4
    a, b = (visualise_features(effnet, images, names, iterations=4, octaves=octave, seed=3, **FAST)
            for _ in range(2))
    assert torch.equal(a.generation.images, b.generation.images)
    c = visualise_features(effnet, images, names, iterations=4, octaves=octave, seed=4, **FAST)
    assert not torch.equal(a.generation.images, c.generation.images)   # other crop offsets


def test_octave_chaining_equals_one_long_run(effnet, photos):
    """Two chained octaves whose schedules are the two halves of one 10-step schedule give the same
    images, history and schedule as the single 10-step run (persistent optimiser, robust loss and
    random stream; the global count drives the blur/TV at 10 from inside the second octave).
    The original's chaining (13 steps from 1, …, 5, 5, …) is checked in test_featvis_parts."""
    images, names = photos
    n, half = 10, 5
    base = Octave(scale=1.0)

    def part(first: bool) -> Octave:
        d = {}
        for key in ("lr", "mask_sigma", "sigma", "denoise_weight", "lambda"):
            a, b = getattr(base, f"start_{key}"), getattr(base, f"end_{key}")
            lo, hi = (0, half - 1) if first else (half, n - 1)
            d[f"start_{key}"], d[f"end_{key}"] = a + (b - a) * lo / (n - 1), a + (b - a) * hi / (n - 1)
        return Octave(scale=1.0, iterations=half, **d)

    single = visualise_features(effnet, images, names, iterations=n, octaves=[base], **FAST)
    chained = visualise_features(effnet, images, names, iterations=99, octaves=[part(True), part(False)], **FAST)
    s, c = single.generation, chained.generation
    assert c.schedule["iteration"].tolist() == list(range(1, n + 1)) == s.schedule["iteration"].tolist()
    for key in ("lr", "mask_sigma", "sigma", "denoise_weight", "lambda"):
        assert torch.allclose(c.schedule[key], s.schedule[key], rtol=1e-12)
    assert torch.allclose(c.history["loss"], s.history["loss"], rtol=1e-4, atol=1e-3)
    assert torch.allclose(c.images, s.images, atol=1e-4)


def test_original_octave_chaining_restarts_the_schedules(taps, run36, effnet):
    """strict_original: [schedules] inside a run: the second octave repeats the count (3, then 3 … 6:
    four steps) and evaluates its schedule at 3 … 6 of 6, starting near its midpoint; the fix runs
    4 … 6 with the second schedule from its start."""
    octaves = [Octave(scale=1.0, iterations=3), Octave(scale=1.0, start_lr=0.2, end_lr=0.1, iterations=3)]
    fixed = generate(taps, run36.facets, octaves, 3, effnet.normalize)
    bug = generate(taps, run36.facets, octaves, 3, effnet.normalize, GenerateOptions(bugs=frozenset({"schedules"})))
    assert fixed.schedule["iteration"].tolist() == [1, 2, 3, 4, 5, 6]
    assert fixed.schedule["lr"].tolist() == pytest.approx([0.5, 0.29, 0.08, 0.2, 0.15, 0.1])
    assert bug.schedule["iteration"].tolist() == [1, 2, 3, 3, 4, 5, 6]
    assert bug.schedule["lr"][3:].tolist() == pytest.approx([0.2 - 0.1 * 2 / 5, 0.2 - 0.1 * 3 / 5, 0.2 - 0.1 * 4 / 5,
                                                             0.1])
    assert bug.history["loss"].shape == (7,) and not torch.allclose(bug.images, fixed.images)


def test_batched_equals_one_cluster_at_a_time(effnet, photos, run36):
    """Clusters are independent: the batched run equals one run per cluster. In float64, because
    with the original's large steps (lr 0.5) float32 rounding differences between batch sizes
    (1e-7 relative in the gradient) grow to visible ones within a few iterations."""
    net = copy.deepcopy(effnet).double()
    taps = FeatureTaps(net, LAYER).probe(net.normalize(photos[0][:1].double()))
    options = GenerateOptions(blur_every=2, denoise_every=3)       # every regulariser runs
    octaves = [Octave(window_step=3, iterations=6)]                # canvas crops at 3 and 6
    both = generate(taps, run36.facets, octaves, 6, net.normalize, options)
    assert both.images.dtype == torch.float64
    for k in range(2):
        one = generate(taps, run36.facets.subset([k]), octaves, 6, net.normalize, options)
        assert torch.allclose(one.images[0], both.images[k], atol=1e-9)
        assert torch.allclose(one.history["activation"][:, 0], both.history["activation"][:, k], rtol=1e-9)


def test_broadcast_fix_changes_the_loss_by_k_squared_and_k(effnet, taps, run36):
    """On the network: the original's loss = fixed loss + (K² − 1)·P + (K − 1)·D (P: the L1 term,
    D: the distance term, both summed over the K clusters; derivation in test_featvis_parts)."""
    facets = run36.facets
    x = effnet.normalize(facets.images)
    k = facets.clusters
    with taps.attached():
        feats, pen = taps.run(x)
    feats = feats.flatten(2).mean(2)
    robust = AdaptiveRobustLoss(tuple(facets.targets.shape))
    args = (feats, pen, facets.targets, activation_weights(facets), facets.channels, robust, 3e-4)
    fixed, orig = loss_terms(*args), loss_terms(*args, broadcast=True)
    p, d = fixed.penalty.sum(), fixed.distance.sum()
    assert p > 0 and d.abs() > 0
    assert torch.allclose(orig.total - fixed.total, (k * k - 1) * p + (k - 1) * d, rtol=1e-4)
    # and inside a run: the first iteration's recorded loss (same start, same forward) differs by that much
    octave = [Octave(scale=1.0)]
    one = generate(taps, facets, octave, 1, effnet.normalize)
    bug = generate(taps, facets, octave, 1, effnet.normalize, GenerateOptions(bugs=frozenset({"broadcast"})))
    p1, d1 = one.history["penalty"][0].sum(), one.history["distance"][0].sum()
    assert float(bug.history["loss"][0] - one.history["loss"][0]) == pytest.approx(
        float((k * k - 1) * p1 + (k - 1) * d1), rel=1e-4)


def test_fourier_parametrisation_raises_the_target_activation(effnet, photos):
    images, names = photos
    result = visualise_features(effnet, images, names, iterations=16, param="fft", save_every=8, **FAST)
    gen = result.generation
    assert gen.history["loss"][-4:].mean() < gen.history["loss"][:4].mean()
    acts = result.activations()
    assert (acts["generated"] > acts["start"]).all() and (acts["generated"] > acts["members"]).all()
    assert gen.images.shape == (2, 3, SIZE, SIZE)


def test_original_bugs_run_and_change_the_result(effnet, photos):
    images, names = photos
    fixed = visualise_features(effnet, images, names, iterations=3, octaves=[Octave(window_step=2)], **FAST)
    orig = visualise_features(effnet, images, names, iterations=3, octaves=[Octave(window_step=2)],
                              strict_original=True, **FAST)
    assert orig.bugs >= {"members", "bgr", "optimiser", "quantisation", "crop"}
    g = orig.generation.images
    assert torch.allclose(g * 255, (g * 255).round(), atol=1e-3)          # uint8 round trips
    assert torch.allclose(orig.generation.alpha, torch.ones_like(orig.generation.alpha))  # α never adapts
    assert not np.array_equal(orig.facets.members, fixed.facets.members)  # farthest members
    for k in range(2):
        far = orig.facets.distances[k, orig.facets.members[k]]
        assert far.min() >= np.sort(orig.facets.distances[k])[-3] - 1e-9


def test_any_2d_zoo_net_and_last_call_of_a_reused_module(photos):
    """ResNet-18 (random weights): `layer4.1.relu` runs twice per BasicBlock; the tap keeps its last
    call, the block output, i.e. layer4's output."""
    import vizlab

    with pytest.warns(UserWarning, match="random weights"):
        net = vizlab.load_model("resnet18", pretrained=False)
    images = photos[0][:4, :, ::2, ::2].contiguous()                        # 64 px
    taps = FeatureTaps(net, "layer4.1.relu").probe(net.normalize(images[:1]))
    assert taps.target_calls == 2 and taps.penalty_name == "layer4.1.conv2"
    feats = encode(taps, images, net.normalize, torch.device("cpu"))
    out = {}
    handle = net.net.layer4.register_forward_hook(lambda m, i, o: out.setdefault("x", o))
    with torch.no_grad():
        net(net.normalize(images))
    handle.remove()
    assert torch.allclose(feats, out["x"].mean((2, 3)), atol=1e-5)
    result = visualise_features(net, images, photos[1][:4], layer="layer4.1.relu", clusters=2, members=2,
                                target_channels=8, iterations=3, embedding="pca")
    assert result.generation.images.shape == (2, 3, 64, 64)


def test_clips_on_a_3d_network(request, monkeypatch):
    model = synthetic_model(request, monkeypatch, "motion_cnn")
    ds = build_synthetic_motion({"name": "synthetic_motion", "num_samples": 6, "seed": 7}, 48, 8)
    clips = torch.stack([ds[i]["image"] for i in range(6)])
    result = visualise_features(model, clips, [ds[i]["name"] for i in range(6)], clusters=2, members=2,
                                target_channels=8, iterations=12, embedding="pca",
                                octaves=[Octave(scale=1.2, window_step=5, start_lr=20, end_lr=3.2, start_lambda=0,
                                                end_lambda=0)])  # a small net: larger steps, no L1
    gen = result.generation
    assert result.layer == "features" and result.penalty_layer == "features.4.0"
    assert gen.images.shape == (2, 3, 8, 48, 48)
    acts = result.activations()
    assert (acts["generated"] > acts["start"]).all()


def test_bad_input(effnet, photos):
    images, names = photos
    with pytest.raises(LayerNotFoundError, match="blocks.9"):
        visualise_features(effnet, images, layer="blocks.9", clusters=2)
    with pytest.raises(ConfigError, match="clusters"):
        visualise_features(effnet, images, layer=LAYER, clusters=7, iterations=1)
    with pytest.raises(ConfigError, match="target_channels"):
        visualise_features(effnet, images, layer=LAYER, clusters=2, target_channels=321, iterations=1)
    with pytest.raises(ConfigError, match="param"):
        visualise_features(effnet, images, layer=LAYER, clusters=2, param="wavelet")
    with pytest.raises(InputError, match="NaN"):
        visualise_features(effnet, images.clone().fill_(float("nan")), layer=LAYER, clusters=2)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        visualise_features(effnet, effnet.normalize(images), layer=LAYER, clusters=2)
    with pytest.raises(ConfigError, match="Unknown featvis option"):
        visualise_features(effnet, images, layer=LAYER, clusters=2, blur_evry=3)


@pytest.mark.slow
def test_clips_on_r3d_18_with_random_weights():
    import vizlab

    with pytest.warns(UserWarning, match="random weights"):
        net = vizlab.load_model("r3d_18", pretrained=False)
    ds = build_synthetic_motion({"name": "synthetic_motion", "num_samples": 4, "seed": 3}, 64, 8)
    clips = torch.stack([ds[i]["image"] for i in range(4)])            # (4, 3, 8, 64, 64)
    result = visualise_features(net, clips, clusters=2, members=2, target_channels=16, iterations=4,
                                embedding="pca", octaves=[Octave(scale=1.2, window_step=2)])
    assert result.layer == "layer4" and result.penalty_layer == "layer4.1.conv2.0"
    assert result.generation.images.shape == (2, 3, 8, 64, 64)
    assert torch.isfinite(result.generation.history["loss"]).all()
