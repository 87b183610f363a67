"""Localisation metrics against ground-truth masks: pointing game, energy pointing, mask IoU.

Masks are bool/0-1 tensors (N, *S) at input resolution (boxes: `boxes_to_masks`). For clips,
(N, T, H, W): the pointing game is spatio-temporal (the saliency argmax over all voxels must
fall on the object in that frame, within the spatial tolerance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from vizlab.errors import ConfigError, InputError
from vizlab.metrics.summaries import ENERGY, MASK_IOU, POINTING, Summary


def boxes_to_masks(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 4) boxes (x0, y0, x1, y1), pixel coordinates, end-exclusive → (N, H, W) bool masks."""
    h, w = size
    ys = torch.arange(h, device=boxes.device).view(1, h, 1)
    xs = torch.arange(w, device=boxes.device).view(1, 1, w)
    b = boxes.view(-1, 4, 1, 1)
    return (xs >= b[:, 0]) & (xs < b[:, 2]) & (ys >= b[:, 1]) & (ys < b[:, 3])


def dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilate (N, *S) masks spatially by a disc of `radius` pixels (per frame for clips)."""
    if radius <= 0:
        return masks.bool()
    r = torch.arange(-radius, radius + 1, device=masks.device, dtype=torch.float32)
    disc = ((r.view(-1, 1) ** 2 + r.view(1, -1) ** 2) <= radius**2).float()[None, None]
    flat = masks.float().reshape(-1, 1, *masks.shape[-2:])
    return (F.conv2d(flat, disc, padding=radius) > 0).view(masks.shape)


def _check(saliency: torch.Tensor, masks: torch.Tensor) -> None:
    if saliency.shape != masks.shape:
        raise InputError(f"Saliency {tuple(saliency.shape)} and mask {tuple(masks.shape)} shapes differ; "
                         "masks must be at input resolution, one per sample.")


def pointing_hits(saliency: torch.Tensor, masks: torch.Tensor, tolerance: int = 15) -> torch.Tensor:
    """(N,) 1.0 where the saliency maximum lies within `tolerance` px of the mask (TorchRay's rule).

    Samples whose mask is empty count as misses.
    """
    _check(saliency, masks)
    flat = saliency.flatten(1)
    peak = flat.argmax(1)
    near = dilate(masks, tolerance).flatten(1)
    return near.gather(1, peak[:, None])[:, 0].float()


def energy_pointing(saliency: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,) share of saliency mass inside the mask (Score-CAM's energy-based pointing game)."""
    _check(saliency, masks)
    sal = saliency.flatten(1).clamp_min(0)
    return (sal * masks.flatten(1)).sum(1) / sal.sum(1).clamp_min(1e-12)


def mask_iou(saliency: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(N,) IoU between {saliency >= threshold} and the mask."""
    _check(saliency, masks)
    pred = saliency.flatten(1) >= threshold
    gt = masks.flatten(1).bool()
    inter = (pred & gt).sum(1).float()
    union = (pred | gt).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


class _PerSampleMean(Metric):
    """Keeps per-sample values (synced across ranks by concatenation); compute() = mean.

    Declares (see vizlab.metrics.summaries): `name` (its config name), `needs_model` / `needs_masks`,
    `summaries` (the one number it reports), `key` (its per-sample value), `options` (for results.json).
    """

    full_state_update = False
    higher_is_better = True
    name = "base"
    needs_model = False
    needs_masks = True
    summaries: tuple[Summary, ...] = ()
    key = "value"
    options: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def score(self, saliency: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def update(self, saliency: torch.Tensor, masks: torch.Tensor) -> None:
        values = self.score(saliency, masks.to(saliency.device))
        self.values.append(values)
        self.last_batch = {self.key: values}

    def evaluate(self, saliency: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """Update the state and return this batch's per-sample values {key: (N,)}."""
        self.update(saliency, masks)
        return self.last_batch

    def evaluate_batch(self, x: torch.Tensor | None, saliency: torch.Tensor, target: torch.Tensor | None,
                       masks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The explain loop's uniform call: this batch's per-sample values; needs `masks`."""
        if masks is None:
            raise InputError(f"Metric {self.name} needs ground-truth object masks (N, *S) at input resolution; "
                             "pass masks=... (e.g. from dataset=synthetic_shapes).")
        return self.evaluate(saliency, masks.to(saliency.device))

    def summary(self) -> dict[str, float]:
        return {self.summaries[0].key: float(self.compute())}

    def protocol(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.options}

    def per_sample(self) -> torch.Tensor:
        return torch.cat(self.values) if isinstance(self.values, list) and self.values else self.values

    def compute(self) -> torch.Tensor:
        values = self.per_sample()
        return values.mean() if len(values) else torch.tensor(float("nan"))


class PointingGame(_PerSampleMean):
    """Pointing game (Zhang et al. 2016, TorchRay's definition): hit if the saliency maximum is
    within `tolerance` pixels (default 15, as TorchRay at 224²) of the object. Accuracy = mean hit."""

    name = "pointing_game"
    summaries = (POINTING,)
    key = "pointing_hit"
    options = ("tolerance",)

    def __init__(self, tolerance: int = 15) -> None:
        super().__init__()
        if tolerance < 0:
            raise ConfigError(f"pointing_game.tolerance must be >= 0, got {tolerance}.")
        self.tolerance = tolerance

    def score(self, saliency, masks):
        return pointing_hits(saliency, masks, self.tolerance)


class EnergyPointing(_PerSampleMean):
    """Share of the saliency mass that falls on the object."""

    name = "energy_pointing"
    summaries = (ENERGY,)
    key = "energy_pointing"

    def score(self, saliency, masks):
        return energy_pointing(saliency, masks)


class MaskIoU(_PerSampleMean):
    """IoU of the thresholded saliency map (default >= 0.5) with the object mask."""

    name = "mask_iou"
    summaries = (MASK_IOU,)
    key = "mask_iou"
    options = ("threshold",)

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        if not 0 <= threshold <= 1:
            raise ConfigError(f"mask_iou.threshold must be in [0, 1], got {threshold}.")
        self.threshold = threshold

    def score(self, saliency, masks):
        return mask_iou(saliency, masks, self.threshold)
