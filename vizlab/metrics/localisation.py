"""Localisation metrics against ground-truth masks: pointing game, energy pointing, mask IoU,
object recall.

Masks are bool/0-1 tensors (N, *S) at input resolution (boxes: `boxes_to_masks`). For clips,
(N, T, H, W): the pointing game is spatio-temporal (the saliency argmax over all voxels must
fall on the object in that frame, within the spatial tolerance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from vizlab.errors import ConfigError, InputError
from vizlab.metrics.summaries import ENERGY, MASK_IOU, POINTING, RECALL, Summary


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
    for what, value in (("Saliency", saliency), ("Object masks", masks)):
        if not isinstance(value, torch.Tensor):
            hint = " Pass `info.saliency` (vizlab.explain(..., return_info=True) returns an Explanation)." \
                if hasattr(value, "saliency") else ""
            raise InputError(f"{what} must be a tensor (N, H, W) or (N, T, H, W); got {type(value).__name__}.{hint}")
    if saliency.shape != masks.shape:
        raise InputError(f"Saliency {tuple(saliency.shape)} and mask {tuple(masks.shape)} shapes differ; "
                         "masks must be at input resolution, one per sample.")


PEAKS = ("argmax", "centre_of_mass", "max_set")


def peak_positions(saliency: torch.Tensor, peak: str = "argmax") -> torch.Tensor:
    """(N, *S) → (N,) flat index of each map's "peak".

    argmax: the first maximum in raster order (TorchRay's rule; with a plateau-shaped map, e.g. an
    extremal-perturbation mask, that is the plateau's top-left pixel). centre_of_mass: the
    saliency-weighted mean position (clips: mean frame, row and column), rounded. max_set: the mean
    position of every element within 1e-6 of the maximum (the plateau's centre), rounded. Both
    may fall outside a non-convex map's support, which is then a miss, as it should be.
    """
    if peak not in PEAKS:
        raise ConfigError(f"pointing_game.peak must be one of {', '.join(PEAKS)}; got {peak!r}.")
    flat = saliency.flatten(1)
    if peak == "argmax":
        return flat.argmax(1)
    if peak == "centre_of_mass":
        weight = flat.clamp_min(0)
        weight = torch.where(weight.sum(1, keepdim=True) > 0, weight, torch.ones_like(weight))
    else:
        top = flat.amax(1, keepdim=True)
        weight = (flat >= top - 1e-6 * top.abs().clamp_min(1)).to(flat.dtype)
    shape = saliency.shape[1:]
    coords = torch.stack(torch.meshgrid(*[torch.arange(n, device=saliency.device, dtype=flat.dtype) for n in shape],
                                        indexing="ij"), dim=-1).view(-1, len(shape))  # (P, D)
    mean = (weight @ coords) / weight.sum(1, keepdim=True)  # (N, D)
    index = torch.zeros(flat.shape[0], dtype=torch.long, device=flat.device)
    for d, n in enumerate(shape):
        index = index * n + mean[:, d].round().long().clamp(0, n - 1)
    return index


def pointing_hits(saliency: torch.Tensor, masks: torch.Tensor, tolerance: int = 15, peak: str = "argmax"
                  ) -> torch.Tensor:
    """(N,) 1.0 where the saliency peak lies within `tolerance` px of the mask (TorchRay's rule).

    peak: how the peak is found, see `peak_positions` (default argmax, TorchRay's). Samples whose
    mask is empty count as misses.
    """
    _check(saliency, masks)
    near = dilate(masks, tolerance).flatten(1)
    return near.gather(1, peak_positions(saliency, peak)[:, None])[:, 0].float()


def object_recall(saliency: torch.Tensor, masks: torch.Tensor, area: float = 0.1,
                  frames: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) the fraction of the object's pixels (voxels) inside the map's top `area` fraction.

    The top k = round(area · size) positions of each map, ties broken at random — computed as the
    expectation over random tie-breaks (exact, no sampling): positions above the k-th value count
    fully, the T positions tied at it count (k − #above)/T each. So a plateau-shaped mask larger
    than the area keeps its share of the object, not whatever comes first in raster order.
    frames: optional (N, T) bool for clips — count only the object voxels of those frames (e.g. the
    frames a 3D-EP mask keeps, `kept_frames`); the top k is still taken over the whole clip.
    Samples without object voxels (in the counted frames) give NaN.
    """
    _check(saliency, masks)
    if not 0 < area <= 1:
        raise ConfigError(f"object_recall.area must be in (0, 1], got {area}.")
    flat = saliency.flatten(1).float()
    obj = masks.flatten(1).float()
    if frames is not None:
        if saliency.dim() != 4 or frames.shape != saliency.shape[:2]:
            raise InputError(f"frames must be (N, T) for clips (N, T, H, W); got {tuple(frames.shape)} for "
                             f"saliency {tuple(saliency.shape)}.")
        obj = (masks.bool() & frames.bool()[:, :, None, None].to(masks.device)).flatten(1).float()
    k = max(1, min(flat.shape[1], round(area * flat.shape[1])))
    kth = flat.topk(k, dim=1).values[:, -1:]  # (N, 1)
    above = flat > kth
    tied = flat == kth
    share = (k - above.sum(1, keepdim=True)).float() / tied.sum(1, keepdim=True).clamp_min(1).float()
    kept = above.float() + tied.float() * share
    total = obj.sum(1)
    return torch.where(total > 0, (kept * obj).sum(1) / total.clamp_min(1), torch.full_like(total, float("nan")))


def kept_frames(saliency: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(N, T, H, W) → (N, T) bool: frames whose map reaches `threshold` somewhere (the frames a
    3D-EP preservation mask keeps)."""
    return saliency.flatten(2).amax(2) >= threshold


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
    """Pointing game (Zhang et al. 2016, TorchRay's definition): hit if the saliency peak is
    within `tolerance` pixels (default 15, as TorchRay at 224²) of the object. Accuracy = mean hit.
    peak: argmax (default, TorchRay's first maximum) · centre_of_mass · max_set (the mean position
    of the maximal set) — the latter two for plateau-shaped maps such as extremal masks."""

    name = "pointing_game"
    summaries = (POINTING,)
    key = "pointing_hit"
    options = ("tolerance", "peak")

    def __init__(self, tolerance: int = 15, peak: str = "argmax") -> None:
        super().__init__()
        if tolerance < 0:
            raise ConfigError(f"pointing_game.tolerance must be >= 0, got {tolerance}.")
        if peak not in PEAKS:
            raise ConfigError(f"pointing_game.peak must be one of {', '.join(PEAKS)}; got {peak!r}.")
        self.tolerance, self.peak = tolerance, peak

    def score(self, saliency, masks):
        return pointing_hits(saliency, masks, self.tolerance, self.peak)


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


class ObjectRecall(_PerSampleMean):
    """Object recall at `area` (default 0.1): the share of the object inside the map's top `area`
    fraction, ties broken at random (in expectation). Set `area` to the perturbation method's area.
    frames: all (default) · kept (clips: only the object voxels of frames whose map reaches
    `keep_threshold`, default 0.5 — 3D-EP may legitimately keep few frames). NaN samples are skipped."""

    name = "object_recall"
    summaries = (RECALL,)
    key = "object_recall"
    options = ("area", "frames", "keep_threshold")

    def __init__(self, area: float = 0.1, frames: str = "all", keep_threshold: float = 0.5) -> None:
        super().__init__()
        if not isinstance(area, (int, float)) or not 0 < area <= 1:
            raise ConfigError(f"object_recall.area must be in (0, 1], got {area!r}.")
        if frames not in ("all", "kept"):
            raise ConfigError(f"object_recall.frames must be all or kept; got {frames!r}.")
        self.area, self.frames, self.keep_threshold = float(area), frames, float(keep_threshold)

    def score(self, saliency, masks):
        frames = kept_frames(saliency, self.keep_threshold) if self.frames == "kept" and saliency.dim() == 4 else None
        return object_recall(saliency, masks, self.area, frames)

    def compute(self) -> torch.Tensor:
        values = self.per_sample()
        return values.nanmean() if len(values) else torch.tensor(float("nan"))
