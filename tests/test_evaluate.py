"""vizlab.evaluate(model, x, saliency, target, metric=..., **options): per-sample scores for any metric."""

from __future__ import annotations

import pytest
import torch
from conftest import module_synthetic_model
from torch.utils.data import DataLoader

import vizlab
from vizlab.errors import ConfigError, InputError
from vizlab.metrics import DeletionInsertion, energy_pointing, mask_iou, pointing_hits


@pytest.fixture(scope="module")
def shapes(request):
    """shapes_cnn (trained), 8 fresh images with masks, and their Grad-CAM maps."""
    from vizlab.data.synthetic_shapes import SyntheticShapes

    with module_synthetic_model(request, "shapes_cnn") as model:
        batch = next(iter(DataLoader(SyntheticShapes(8, seed=11), batch_size=8)))
        x = model.normalize(batch["image"])
        yield model, x, batch["label"], batch["mask"], vizlab.explain(model, x, batch["label"])


def test_deletion_insertion_per_sample_equals_the_metric_and_ranks_maps(shapes):
    model, x, labels, _, sal = shapes
    scores = vizlab.evaluate(model, x, sal, labels, steps=8, batch_size=96)
    assert set(scores) == {"deletion_auc", "insertion_auc"} and scores["deletion_auc"].shape == (8,)
    direct = DeletionInsertion(model, steps=8, batch_size=96).evaluate(x, sal, labels)
    for key, value in direct.items():
        assert torch.allclose(scores[key], value)
    inverted = vizlab.evaluate(model, x, 1 - sal, labels, steps=8, batch_size=96)  # least salient first
    assert scores["deletion_auc"].mean() < inverted["deletion_auc"].mean()
    assert scores["insertion_auc"].mean() > inverted["insertion_auc"].mean()
    predicted = vizlab.evaluate(model, x, sal, None, steps=8, batch_size=96, modes=["deletion"])  # target=None: predicted
    with torch.no_grad():
        by_hand = vizlab.evaluate(model, x, sal, model(x).argmax(1), steps=8, batch_size=96, modes=["deletion"])
    assert list(predicted) == ["deletion_auc"] and torch.equal(predicted["deletion_auc"], by_hand["deletion_auc"])


def test_localisation_metrics_take_masks(shapes):
    model, x, labels, masks, sal = shapes
    hits = vizlab.evaluate(model, x, sal, labels, metric="pointing_game", masks=masks, tolerance=3)
    assert torch.equal(hits["pointing_hit"], pointing_hits(sal, masks, 3)) and hits["pointing_hit"].mean() >= 0.75
    energy = vizlab.evaluate(model, x, sal, labels, metric="energy_pointing", masks=masks)
    assert torch.allclose(energy["energy_pointing"], energy_pointing(sal, masks))
    iou = vizlab.evaluate(None, None, sal, None, metric="mask_iou", masks=masks, threshold=0.3)  # no model needed
    assert torch.allclose(iou["mask_iou"], mask_iou(sal, masks, 0.3))


def test_clips(tiny3d):
    x = torch.randn(2, 3, 4, 16, 16)
    sal = vizlab.explain(tiny3d, x, [1, 2], method="gradcam")
    scores = vizlab.evaluate(tiny3d, x, sal, [1, 2], steps=4, unit="frame")
    assert scores["deletion_auc"].shape == (2,)
    assert torch.allclose(scores["insertion_auc"],
                          DeletionInsertion(tiny3d, steps=4, unit="frame").evaluate(x, sal, [1, 2])["insertion_auc"])


@pytest.mark.parametrize(("call", "error", "match"), [
    (dict(metric="pointing_game"), InputError, "needs ground-truth object masks: pass masks="),
    (dict(metric="pointing_gam"), ConfigError, "Did you mean: 'pointing_game'"),
    (dict(stpes=3), ConfigError, "Bad deletion/insertion option"),
    (dict(metric="pointing_game", masks=torch.ones(1, 16, 16, dtype=torch.bool), tolerance=-1), ConfigError, ">= 0"),
    (dict(saliency=torch.rand(2, 8, 8)), InputError, r"does not match the input \(2, 3, 16, 16\)"),
    (dict(saliency=torch.full((2, 16, 16), float("nan"))), InputError, "NaN"),
    (dict(target=7), InputError, "out of range"),
    (dict(x=torch.randn(2, 1, 16, 16)), InputError, "expects 3"),
])
def test_bad_calls_raise_one_clear_error(tiny2d, call, error, match):
    args = {"x": torch.randn(2, 3, 16, 16), "saliency": torch.rand(2, 16, 16), "target": 1, **call}
    with pytest.raises(error, match=match):
        vizlab.evaluate(tiny2d, args.pop("x"), args.pop("saliency"), args.pop("target"), **args)


def test_every_metric_reports_what_it_declares(tiny2d):
    """needs_masks / summaries are what the explain loop, evaluate() and the sweep report read."""
    from vizlab.metrics.build import METRICS, build_metric
    from vizlab.viz.report import METRICS as REPORTED

    x, sal = torch.randn(2, 3, 16, 16), torch.rand(2, 16, 16)
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, 4:9, 4:9] = True
    for name, cls in METRICS.items():
        metric = build_metric(name, tiny2d, **({"steps": 2} if cls.needs_model else {}))
        assert metric.name == name
        per_sample = metric.evaluate_batch(x, sal, torch.tensor([0, 1]), masks if cls.needs_masks else None)
        assert all(v.shape == (2,) for v in per_sample.values())
        assert set(metric.summary()) == {s.key for s in cls.summaries}
        assert {s.key for s in cls.summaries} <= {m.key for m in REPORTED}  # energy_pointing was missing once
