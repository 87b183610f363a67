"""Object recall (random tie-breaking, in expectation) and the pointing game's peak options for plateau maps."""

from __future__ import annotations

import pytest
import torch
import yaml

from vizlab.errors import ConfigError, InputError
from vizlab.metrics import ObjectRecall, PointingGame, kept_frames, object_recall, pointing_hits
from vizlab.metrics.build import build_metrics, metric_protocols


def sampled_recall(saliency: torch.Tensor, masks: torch.Tensor, area: float, draws: int, seed: int = 0
                   ) -> torch.Tensor:
    """The definition, by sampling: rank by saliency with a random permutation as the tie-break."""
    gen = torch.Generator().manual_seed(seed)
    flat, obj = saliency.flatten(1), masks.flatten(1).float()
    k = round(area * flat.shape[1])
    out = torch.zeros(flat.shape[0])
    for _ in range(draws):
        perm = torch.randperm(flat.shape[1], generator=gen)
        order = flat[:, perm].argsort(dim=1, descending=True, stable=True)
        top = perm[order[:, :k]]
        out += obj.gather(1, top).sum(1) / obj.sum(1)
    return out / draws


def test_recall_is_the_expectation_over_random_tie_breaks():
    gen = torch.Generator().manual_seed(3)
    sal = torch.randint(0, 4, (3, 12, 12), generator=gen).float()  # heavy ties
    masks = torch.zeros(3, 12, 12, dtype=torch.bool)
    masks[:, 2:7, 3:9] = True
    exact = object_recall(sal, masks, area=0.2)
    assert torch.allclose(exact, sampled_recall(sal, masks, 0.2, draws=3000), atol=0.02)


def test_recall_of_plateau_perfect_inverse_and_constant_maps():
    masks = torch.zeros(1, 20, 20, dtype=torch.bool)
    masks[0, 5:9, 5:10] = True  # 20 px = 5 % of the image
    assert object_recall(masks.float(), masks, 0.1).item() == 1.0          # the object inside the top 10 %
    assert object_recall(1 - masks.float(), masks, 0.1).item() == 0.0
    assert object_recall(torch.ones(1, 20, 20), masks, 0.1).item() == pytest.approx(0.1)  # chance = the area
    plateau = torch.zeros(1, 20, 20)
    plateau[0, 0:10, 0:16] = 1  # 160 px of ones hold the whole object; top 40 px are 40/160 of the plateau
    assert object_recall(plateau, masks, 0.1).item() == pytest.approx(40 / 160)
    # raster-order ties would have given the first 40 plateau px (rows 0-2): none of the object
    assert object_recall(torch.zeros(1, 20, 20), torch.zeros(1, 20, 20, dtype=torch.bool), 0.1).isnan().item()


def test_recall_over_kept_frames():
    masks = torch.zeros(1, 4, 10, 10, dtype=torch.bool)
    masks[0, :, 2:5, 2:5] = True                      # the object in every frame (36 voxels)
    sal = torch.zeros(1, 4, 10, 10)
    sal[0, 1, 2:5, 2:5] = 1.0                         # a 3D mask that keeps frame 1 only
    kept = kept_frames(sal, 0.5)
    assert kept.tolist() == [[False, True, False, False]]
    # top 40 of 400: the 9 kept voxels, then 31 of the 391 tied zeros (27 of which are object voxels)
    assert object_recall(sal, masks, 0.1).item() == pytest.approx((9 + 27 * 31 / 391) / 36)
    assert object_recall(sal, masks, 0.1, frames=kept).item() == 1.0
    with pytest.raises(InputError, match="frames must be"):
        object_recall(sal, masks, 0.1, frames=kept[:, :2])
    metric = ObjectRecall(area=0.1, frames="kept")
    metric.update(sal, masks)
    assert metric.compute().item() == 1.0


def test_an_explanation_instead_of_its_saliency_is_named():
    from vizlab.methods.base import Explanation

    masks = torch.zeros(1, 10, 10, dtype=torch.bool)
    info = Explanation(torch.rand(1, 10, 10), None, torch.tensor([0]), torch.zeros(1, 2), {})
    with pytest.raises(InputError, match=r"Saliency must be a tensor .*got Explanation\. Pass `info\.saliency`"):
        object_recall(info, masks, 0.1)
    with pytest.raises(InputError, match="Object masks must be a tensor"):
        object_recall(info.saliency, masks.numpy(), 0.1)


def test_pointing_peak_options_on_a_plateau():
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 16:24, 16:24] = True
    plateau = torch.zeros(1, 32, 32)
    plateau[0, 9:24, 9:24] = 1.0        # covers the object; first maximum (9, 9) is 7 px away, centre (16, 16)
    assert pointing_hits(plateau, masks, tolerance=3).item() == 0.0
    assert pointing_hits(plateau, masks, tolerance=3, peak="max_set").item() == 1.0
    assert pointing_hits(plateau, masks, tolerance=3, peak="centre_of_mass").item() == 1.0
    ramp = plateau.clone()
    ramp[0, 0, 0] = 0.999               # below the maximum: ignored by max_set, a small pull on the centre of mass
    assert pointing_hits(ramp, masks, tolerance=3, peak="max_set").item() == 1.0
    two = torch.zeros(1, 32, 32)
    two[0, 2, 2] = two[0, 29, 29] = 1.0  # two maxima far apart: their centre (16, 16) lies in the object
    assert pointing_hits(two, masks, tolerance=0, peak="max_set").item() == 1.0
    assert pointing_hits(two, masks, tolerance=0).item() == 0.0
    clip_masks = torch.zeros(1, 3, 16, 16, dtype=torch.bool)
    clip_masks[0, 1, 6:10, 6:10] = True
    clip = torch.zeros(1, 3, 16, 16)
    clip[0, 0:3, 4:12, 4:12] = 1.0       # plateau over all frames: centre frame 1, centre (8, 8)
    assert pointing_hits(clip, clip_masks, tolerance=0).item() == 0.0
    assert pointing_hits(clip, clip_masks, tolerance=0, peak="max_set").item() == 1.0


def test_metric_config_and_bad_options():
    with open("conf/metric/object_recall.yaml") as f:
        recall_cfg = yaml.safe_load(f)
    with open("conf/metric/pointing_game.yaml") as f:
        pointing_cfg = yaml.safe_load(f)
    metrics = build_metrics({**recall_cfg, **pointing_cfg}, model=None, has_masks=True)
    protocol = metric_protocols(metrics)
    assert protocol["object_recall"] == {"area": 0.1, "frames": "all", "keep_threshold": 0.5}
    assert protocol["pointing_game"] == {"tolerance": 15, "peak": "argmax"}
    with pytest.raises(ConfigError, match="peak"):
        PointingGame(peak="centroid")
    with pytest.raises(ConfigError, match="area"):
        ObjectRecall(area=0)
    with pytest.raises(ConfigError, match="frames"):
        ObjectRecall(frames="some")
    with pytest.raises(ConfigError, match="needs ground-truth"):
        build_metrics({"object_recall": {}}, model=None, has_masks=False)
