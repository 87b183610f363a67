"""Metric properties (hypothesis), the RISE preset against a plain re-implementation, localisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from vizlab.errors import ConfigError, InputError
from vizlab.metrics import (
    DeletionInsertion,
    EnergyPointing,
    MaskIoU,
    PointingGame,
    boxes_to_masks,
    gaussian_blur,
    pointing_hits,
)


class RegionModel(nn.Module):
    """logit_0 = 4 · mean of channel 0 inside a known region; logit_1 = 0. Ground truth for ranking."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())

    def forward(self, x):
        inside = (x[:, 0] * self.mask).flatten(1).sum(1) / self.mask.sum()
        return torch.stack([4 * inside, torch.zeros_like(inside)], dim=1)


def region(size, top, left, h, w):
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[top:top + h, left:left + w] = True
    return mask


regions = st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(2, 6), st.integers(2, 6))


@settings(max_examples=20, deadline=None)
@given(box=regions, seed=st.integers(0, 2**16))
def test_oracle_beats_random(box, seed):
    mask = region(16, *box)
    model = RegionModel(mask).eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, 16, 16, generator=g) + 0.5  # positive evidence everywhere in the region
    oracle = mask.float()[None] + 0.01 * torch.rand(1, 16, 16, generator=g)
    random = torch.rand(1, 16, 16, generator=g)
    metric = DeletionInsertion(model, steps=16, deletion_substrate="normalized_zeros",
                               insertion_substrate="normalized_zeros")
    good = metric.evaluate(x, oracle, torch.tensor([0]))
    bad = metric.evaluate(x, random, torch.tensor([0]))
    assert good["deletion_auc"] < bad["deletion_auc"]
    assert good["insertion_auc"] > bad["insertion_auc"]
    for value in (*good.values(), *bad.values()):
        assert 0 <= float(value) <= 1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), steps=st.integers(1, 30), substrate=st.sampled_from(["zeros", "blur", "mean"]))
def test_curve_end_points_are_the_substrate_and_the_input(tiny2d, seed, steps, substrate):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 12, 12, generator=g)
    sal = torch.rand(2, 12, 12, generator=g)
    target = torch.tensor([1, 3])
    metric = DeletionInsertion(tiny2d, steps=steps, deletion_substrate=substrate, insertion_substrate=substrate)
    curves = metric.curves(x, sal, target)
    from vizlab.metrics.substrates import make_substrate

    with torch.no_grad():
        p_input = tiny2d(x).softmax(1)[[0, 1], target]
        p_base = tiny2d(make_substrate(substrate, tiny2d, x)).softmax(1)[[0, 1], target]
    assert torch.allclose(curves["deletion"][:, -1], p_base, atol=1e-6)  # everything deleted → substrate
    assert torch.allclose(curves["deletion"][:, 0], p_input, atol=1e-6)
    assert torch.allclose(curves["insertion"][:, 0], p_base, atol=1e-6)
    assert torch.allclose(curves["insertion"][:, -1], p_input, atol=1e-6)
    assert curves["fractions"][0] == 0 and curves["fractions"][-1] == 1 and len(curves["fractions"]) == steps + 1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), scale=st.floats(0.01, 100), shift=st.floats(-5, 5),
       transform=st.sampled_from(["affine", "exp", "cube"]))
def test_invariant_to_monotone_rescaling(tiny2d, seed, scale, shift, transform):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 10, 10, generator=g)
    # distinct, well-separated values so no transform creates ties
    sal = torch.stack([torch.randperm(100, generator=g) for _ in range(2)]).view(2, 10, 10).double() / 100
    f = {"affine": lambda s: scale * s + shift, "exp": lambda s: torch.exp(3 * s), "cube": lambda s: (s - 0.5) ** 3}
    metric = DeletionInsertion(tiny2d, steps=10)
    a = metric.evaluate(x, sal.float(), torch.tensor([0, 1]))
    b = metric.evaluate(x, f[transform](sal).float(), torch.tensor([0, 1]))
    for key in a:
        assert torch.equal(a[key], b[key])


def rise_reference(model, img, sal, target, mode, step=224):
    """Petsiuk et al.'s CausalMetric, one image, one step at a time (RISE evaluation code, restated)."""
    n, c, h, w = img.shape
    hw = h * w
    n_steps = (hw + step - 1) // step
    if mode == "deletion":
        start, finish = img.clone(), torch.zeros_like(img)
    else:
        start, finish = gaussian_blur(img), img.clone()
    order = np.flip(np.argsort(sal.reshape(-1, hw).numpy(), axis=1), axis=-1)
    scores = np.empty(n_steps + 1)
    for i in range(n_steps + 1):
        with torch.no_grad():
            scores[i] = model(start).softmax(1)[0, target].item()
        if i < n_steps:
            coords = torch.from_numpy(order[:, step * i:step * (i + 1)].copy())
            start.view(1, c, hw)[0, :, coords] = finish.view(1, c, hw)[0, :, coords]
    return (scores.sum() - scores[0] / 2 - scores[-1] / 2) / n_steps, scores


def test_rise_preset_equals_plain_reimplementation():
    torch.manual_seed(0)
    from conftest import TinyCNN

    model = TinyCNN(2, classes=5, width=4).eval()
    img = torch.randn(2, 3, 224, 224)
    sal = torch.rand(2, 224, 224)  # continuous: no ties, so argsort order is unique
    metric = DeletionInsertion(model, preset="rise", batch_size=128)
    curves = metric.curves(img, sal, torch.tensor([2, 4]))
    assert curves["deletion"].shape == (2, 225)  # 224 steps of 224 pixels + the start
    ours = metric.evaluate(img, sal, torch.tensor([2, 4]))
    for i, t in enumerate((2, 4)):
        for mode in ("deletion", "insertion"):
            auc, scores = rise_reference(model, img[i:i + 1], sal[i:i + 1], t, mode)
            assert np.allclose(curves[mode][i].numpy(), scores, atol=1e-6)
            assert abs(float(ours[f"{mode}_auc"][i]) - auc) < 1e-6


def test_frame_unit_and_video(tiny3d):
    x = torch.randn(2, 3, 4, 8, 8)
    sal = torch.rand(2, 4, 8, 8)
    metric = DeletionInsertion(tiny3d, unit="frame", steps=4)
    curves = metric.curves(x, sal, torch.tensor([0, 1]))
    assert curves["deletion"].shape == (2, 5)
    voxel = DeletionInsertion(tiny3d, steps=8).evaluate(x, sal, torch.tensor([0, 1]))
    assert voxel["deletion_auc"].shape == (2,)
    with pytest.raises(ConfigError, match="unit=frame needs clips"):
        DeletionInsertion(tiny3d, unit="frame").curves(torch.randn(1, 3, 8, 8), torch.rand(1, 8, 8), 0)


def test_custom_substrate_and_compute(tiny2d):
    metric = DeletionInsertion(tiny2d, steps=5, deletion_substrate=lambda x: x * 0 + 2.0, modes=["deletion"])
    x = torch.randn(3, 3, 8, 8)
    metric.update(x, torch.rand(3, 8, 8), torch.tensor([0, 1, 2]))
    metric.update(x[:1], torch.rand(1, 8, 8), torch.tensor([4]))
    out = metric.compute()
    assert set(out) == {"deletion_auc"}
    per = metric.per_sample()
    assert per["deletion_auc"].shape == (4,) and per["deletion_curve"].shape == (4, 6)
    assert torch.isclose(out["deletion_auc"], per["deletion_auc"].mean())
    assert metric.protocol()["deletion_substrate"] == "<lambda>"


def test_bad_metric_options(tiny2d):
    with pytest.raises(ConfigError, match="preset"):
        DeletionInsertion(tiny2d, preset="petsiuk")
    with pytest.raises(ConfigError, match="steps"):
        DeletionInsertion(tiny2d, steps=0)
    with pytest.raises(ConfigError, match="Bad deletion/insertion option"):
        DeletionInsertion(tiny2d, stpes=3)
    with pytest.raises(ConfigError, match="Unknown substrate"):
        DeletionInsertion(tiny2d, deletion_substrate="grey").curves(torch.randn(1, 3, 8, 8), torch.rand(1, 8, 8), 0)
    with pytest.raises(InputError, match="does not match input"):
        DeletionInsertion(tiny2d).curves(torch.randn(1, 3, 8, 8), torch.rand(1, 4, 4), 0)
    with pytest.raises(ConfigError, match="tolerance"):
        PointingGame(tolerance=-1)


def test_pointing_game_tolerance_and_video():
    masks = boxes_to_masks(torch.tensor([[10, 10, 20, 20], [0, 0, 4, 4]]), (32, 32))
    assert masks[0].sum() == 100 and masks[0, 10, 10] and not masks[0, 20, 20]
    sal = torch.zeros(2, 32, 32)
    sal[0, 15, 15] = 1  # inside the box
    sal[1, 4 + 5, 0] = 1  # 6 px below the box edge (row 3)
    assert pointing_hits(sal, masks, tolerance=0).tolist() == [1.0, 0.0]
    assert pointing_hits(sal, masks, tolerance=6).tolist() == [1.0, 1.0]
    clip_masks = torch.zeros(1, 3, 16, 16, dtype=torch.bool)
    clip_masks[0, 2, 4:8, 4:8] = True  # object only in frame 2
    clip_sal = torch.zeros(1, 3, 16, 16)
    clip_sal[0, 1, 5, 5] = 1  # right place, wrong frame
    assert pointing_hits(clip_sal, clip_masks, tolerance=2).item() == 0.0
    clip_sal[0, 2, 5, 5] = 2
    assert pointing_hits(clip_sal, clip_masks, tolerance=2).item() == 1.0


def test_localisation_metrics_accumulate():
    masks = boxes_to_masks(torch.tensor([[0, 0, 8, 8]] * 2), (16, 16))
    perfect = masks.float()
    pg, iou, energy = PointingGame(tolerance=0), MaskIoU(), EnergyPointing()
    for metric in (pg, iou, energy):
        metric.update(perfect, masks)
        metric.update(1 - perfect, masks)
    assert pg.compute().item() == pytest.approx(0.5)
    assert iou.per_sample().tolist() == [1.0, 1.0, 0.0, 0.0]
    assert energy.per_sample().tolist() == [1.0, 1.0, 0.0, 0.0]
