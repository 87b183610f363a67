"""HR-CAM refinement pipeline (Tagaris et al., ICIP 2019, `postprocessing.pipeline`), batched in PyTorch.

`refine(image, low, high, params)` turns a low-resolution CAM (N, h, w) and a high-resolution CAM (N, H, W)
into the refined CAM (N, H, W) in [0, 1] and returns every intermediate by name. Each step is also a pure,
batched function of its own (shapes in the docstrings; N is the batch):

 1. `box_blur`        blurred = 5×5 box filter of minmax(high), 'reflect' borders (scipy convention)
 2. `sobel_magnitude` grad = minmax(√((Gx² + Gy²)/2)), skimage `filters.sobel` convention
 3. `resize_low`      low_up = bilinear resize of low to H×W (PIL / align_corners=False)
    `region_of_interest` roi = low_up > P85(low_up): the top 15 %
 4. `growing_bounds`  (lower, upper) = (P25, P75) of grad inside the roi
 5. `focal_points`    seeds: the round(√H) largest low_up pixels ('global') or thresholded local maxima ('local')
 6. `region_growing`  pixels 4-connected to a seed through lower ≤ grad ≤ upper
 7-8. `full_segment`  (segmented ∪ (grad ≥ upper ∧ roi)) with holes < 256 px filled
 9. `merge_maps`      α·segment + (1 − α)·minmax(low_up) ('blend') or their product ('multiply')
10. `crop_image`      keep the image where minmax(merged) is in the top 15 % ('percentage') or > 0.6 ('threshold')

Computation runs on the inputs' device in float64 when `high` is float64 and in float32 otherwise (float16 /
bfloat16 inputs too); float outputs take high's dtype. The connected-set steps (6, 8) run per image with scipy
by default (see `vizlab.hrcam.regions`). `PipelineParams.strict_original`
switches between vizlab's fixes (default) and the original's behaviour; each fix is listed on the dataclass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vizlab.errors import ConfigError, InputError
from vizlab.hrcam.regions import (
    BACKENDS,
    fill_holes,
    grow_from_seeds,
    local_maxima,
    mask_coordinates,
    skeletonize,
)

STEP_KEYS = ("blurred", "low", "low_resized", "edges", "roi", "bounds", "focal_points", "segmented",
             "full_segment", "merged", "result")


@dataclass
class PipelineParams:
    """Every parameter of the original pipeline, with its default.

    roi_percentile: ROI = low_up > P_roi(low_up); 85 keeps the top 15 %. In (0, 100).
    box_size: side of the box blur (original `filters.blur(filter_size=5)`). Odd, ≥ 1.
    n_focal: number of global focal points; None → round(√H) (15 at 224; the original used opt.im_size).
    focal_scope: 'global' (top-n pixels of low_up) or 'local' (local maxima of the low map).
    maxima_threshold: 'local' only: keep maxima above this value; None → (max + min)/2 of the maxima values.
    maxima_areas: 'local' only: 'small' skeletonizes the upsampled maxima blocks, 'large' keeps them whole
        ('all' is accepted as a synonym of 'large').
    bounds_percentiles: (lower, upper) percentiles of grad inside the ROI for region growing. 0 ≤ lo ≤ hi ≤ 100.
    hole_area: background components smaller than this (pixels) are filled. ≥ 0.
    merge_type: 'blend' (α·segment + (1 − α)·low) or 'multiply' (segment·low).
    merge_alpha: α of 'blend', in [0, 1].
    filter_type: 'percentage' (keep the top `filter_percentage` %) or 'threshold' (keep > `filter_threshold`).
    filter_percentage: in [0, 100] (a percentage, although the original documents a fraction).
    filter_threshold: in [0, 1].
    backend: connected-set steps: 'auto' (= 'scipy'), 'scipy' (per image, CPU) or 'torch' (batched, on device).
    strict_original: False (default) applies vizlab's fixes; True reproduces the original where they differ:

      1. crop threshold (§6.6.5): the original takes t from the *un-normalised* merged map and compares it with
         the normalised one, so the kept fraction drifts from `filter_percentage`. Fixed: t from minmax(merged).
      2. growing bounds (§6.6.6): the original silently replaces a bound equal to 0 by the whole-image P25/P75
         (a SimpleITK work-around). Fixed: 0 is a valid bound; only an undefined bound (empty ROI) is replaced.
      3. blank low CAM (§6.6.6): the original calls a CAM with no positive pixel "blank" and returns the bare
         segment. Fixed: only a constant CAM carries no information; an all-negative CAM is still ranked.
      4. local maxima threshold: the original tests (maxima · low) > t, so with t < 0 every non-maximum pixel
         becomes a focal point, and with a single maximum (t = its value) there is no focal point at all.
         Fixed: maxima ∧ (low ≥ t).
      5. merge resolution: the original rounds low to uint8 before its bilinear resize (PIL, two rounded passes).
         Fixed: the float low_up is used. (Strict mode emulates PIL exactly.)
      6. Sobel borders: skimage < 0.19 (what the original ran) zeroed the 1-pixel border of `sobel`.
         Fixed: current skimage ('reflect' borders, nothing zeroed).
      7. hole filling: skimage `remove_small_holes` also fills small background pieces that touch the image
         border. Fixed: only true holes (not touching the border) are filled, as the spec (§6.8) asks.

    Always fixed (the original crashes instead): an empty segment returns minmax(low_up) at full size rather than
    the 14×14 low map; an empty ROI takes whole-image bounds; both inputs blank → an all-zero merged map;
    a constant map normalises to (map > 0) instead of NaN.
    """

    roi_percentile: float = 85.0
    box_size: int = 5
    n_focal: int | None = None
    focal_scope: str = "global"
    maxima_threshold: float | None = None
    maxima_areas: str = "small"
    bounds_percentiles: tuple[float, float] = field(default=(25.0, 75.0))
    hole_area: int = 256
    merge_type: str = "blend"
    merge_alpha: float = 0.5
    filter_type: str = "percentage"
    filter_percentage: float = 15.0
    filter_threshold: float = 0.6
    backend: str = "auto"
    strict_original: bool = False

    def __post_init__(self) -> None:
        _check_range("roi_percentile", self.roi_percentile, 0, 100, open_=True)
        if not _is_int(self.box_size) or self.box_size < 1 or self.box_size % 2 == 0:
            raise ConfigError(f"box_size must be an odd integer >= 1; got {self.box_size!r}.")
        if self.n_focal is not None and (not _is_int(self.n_focal) or self.n_focal < 1):
            raise ConfigError(f"n_focal must be None (round(sqrt(H))) or an integer >= 1; got {self.n_focal!r}.")
        _check_choice("focal_scope", self.focal_scope, ("global", "local"))
        if self.maxima_areas == "all":
            self.maxima_areas = "large"
        _check_choice("maxima_areas", self.maxima_areas, ("small", "large"))
        if self.maxima_threshold is not None:
            _check_number("maxima_threshold", self.maxima_threshold)
        bounds = tuple(self.bounds_percentiles)
        if len(bounds) != 2:
            raise ConfigError(f"bounds_percentiles must be (lower, upper); got {self.bounds_percentiles!r}.")
        _check_range("bounds_percentiles[0]", bounds[0], 0, 100)
        _check_range("bounds_percentiles[1]", bounds[1], 0, 100)
        if bounds[0] > bounds[1]:
            raise ConfigError(f"bounds_percentiles must satisfy lower <= upper, in [0, 100]; got {bounds}.")
        self.bounds_percentiles = (float(bounds[0]), float(bounds[1]))
        if not _is_int(self.hole_area) or self.hole_area < 0:
            raise ConfigError(f"hole_area must be an integer >= 0 (pixels); got {self.hole_area!r}.")
        _check_choice("merge_type", self.merge_type, ("blend", "multiply"))
        _check_range("merge_alpha", self.merge_alpha, 0, 1)
        _check_choice("filter_type", self.filter_type, ("percentage", "threshold"))
        _check_range("filter_percentage", self.filter_percentage, 0, 100)
        _check_range("filter_threshold", self.filter_threshold, 0, 1)
        _check_choice("backend", self.backend, BACKENDS)
        if not isinstance(self.strict_original, bool | np.bool_):
            raise ConfigError(f"strict_original must be true or false; got {self.strict_original!r}.")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> PipelineParams:
        """Build from a plain or OmegaConf mapping; unknown keys raise ConfigError listing the valid ones."""
        values = dict(values or {})
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ConfigError(f"Unknown HR-CAM pipeline parameter(s) {unknown}. Valid: {', '.join(sorted(valid))}.")
        if "bounds_percentiles" in values and values["bounds_percentiles"] is not None:
            values["bounds_percentiles"] = tuple(values["bounds_percentiles"])
        return cls(**values)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number; got {value!r}.")


def _check_range(name: str, value: Any, low: float, high: float, open_: bool = False) -> None:
    _check_number(name, value)
    ok = low < value < high if open_ else low <= value <= high
    if not ok:
        interval = f"({low}, {high})" if open_ else f"[{low}, {high}]"
        raise ConfigError(f"{name} must be in {interval}; got {value!r}.")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}.")


# --- helpers ---------------------------------------------------------------------------------------------------
def minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-map min-max normalisation of (N, H, W) to [0, 1]. A constant map becomes (map > 0) (not NaN)."""
    low, high = torch.aminmax(x.flatten(1), dim=1)
    low, span = low.view(-1, 1, 1), (high - low).view(-1, 1, 1)
    flat = span == 0
    if not bool(flat.any()):
        return (x - low) / span
    return torch.where(flat, (x > 0).to(x.dtype), (x - low) / torch.where(flat, torch.ones_like(span), span))


def percentile(x: torch.Tensor, q: float | Sequence[float], mask: torch.Tensor | None = None) -> torch.Tensor:
    """numpy's linear percentile(s) of each map (N, H, W) → (N,) for one q, (N, len(q)) for several.

    With `mask`, only the masked pixels count; a map with an empty mask gives NaN. Bit-compatible with
    `np.percentile(..., method='linear')` (same virtual index and lerp). Selection-based (kthvalue) without a mask;
    with a mask the masked values are compacted per row and sorted.
    """
    qs = [float(q)] if isinstance(q, int | float) else [float(v) for v in q]
    flat = x.flatten(1)
    n_rows, n_cols = flat.shape
    if mask is None:
        count = torch.full((n_rows,), n_cols, dtype=flat.dtype, device=flat.device)
        out = [_lerp_order_stats(flat, count, qv, sorted_=False) for qv in qs]
    else:
        values, count = _compact(flat, mask.flatten(1))
        values = values.sort(dim=1).values
        out = [_lerp_order_stats(values, count.to(flat.dtype), qv, sorted_=True) for qv in qs]
    result = torch.stack(out, dim=1)
    return result[:, 0] if isinstance(q, int | float) else result


def _compact(flat: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked values of each row moved to the front of a (N, max count) tensor padded with +inf; and the counts."""
    counts = mask.sum(1)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    out = torch.full((flat.shape[0], width), float("inf"), dtype=flat.dtype, device=flat.device)
    rows, cols = mask.nonzero(as_tuple=True)
    slot = torch.arange(rows.numel(), device=flat.device) - (torch.cumsum(counts, 0) - counts)[rows]
    out[rows, slot] = flat[rows, cols]
    return out, counts


def _lerp_order_stats(values: torch.Tensor, count: torch.Tensor, q: float, sorted_: bool) -> torch.Tensor:
    q = q / 100.0
    position = ((count - 1) * q).clamp(min=0)  # numpy's virtual index for 'linear'
    below = position.floor()
    frac = position - below
    index = below.long()
    if sorted_:
        last = (count.long() - 1).clamp(min=0)
        lo = values.gather(1, index.clamp(max=values.shape[1] - 1)[:, None])[:, 0]
        hi = values.gather(1, torch.minimum(index + 1, last).clamp(max=values.shape[1] - 1)[:, None])[:, 0]
    else:  # same count on every row: two selections instead of a sort
        k = int(index[0])
        lo = values.kthvalue(k + 1, dim=1).values
        ties = (values <= lo[:, None]).sum(1) > k + 1
        above = torch.where(values > lo[:, None], values, torch.full_like(values, float("inf"))).min(1).values
        hi = torch.where(ties | torch.isinf(above), lo, above)
    diff = hi - lo
    out = torch.where(frac >= 0.5, hi - diff * (1 - frac), lo + diff * frac)  # numpy's _lerp
    out = torch.where(frac > 0, out, lo)
    return torch.where(count > 0, out, torch.full_like(out, float("nan")))


def _pad_symmetric(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last two dims of (N, C, H, W) by `pad` with scipy's 'reflect' (d c b a | a b c d) rule."""
    if pad == 0:
        return x
    x = torch.cat([x[..., :pad].flip(-1), x, x[..., -pad:].flip(-1)], dim=-1)
    return torch.cat([x[..., :pad, :].flip(-2), x, x[..., -pad:, :].flip(-2)], dim=-2)


# --- the steps -------------------------------------------------------------------------------------------------
def box_blur(high: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Step 1: size×size mean filter of minmax(high), scipy 'reflect' borders. (N, H, W) → (N, H, W).

    Separable: a sum of `size` shifted slices per axis (faster than a 2-D pooling on a CPU).
    """
    x = _pad_symmetric(minmax(high)[:, None], size // 2)[:, 0]
    h, w = high.shape[-2:]
    rows = sum(x[:, i:i + h] for i in range(size))
    return sum(rows[:, :, j:j + w] for j in range(size)) / (size * size)


def sobel_magnitude(x: torch.Tensor, zero_border: bool = False) -> torch.Tensor:
    """Step 2 (before minmax): skimage `filters.sobel`, √((Gx² + Gy²)/2) with the /4 kernels, 'reflect' borders.

    zero_border=True reproduces skimage < 0.19, which set the outermost pixels to 0. (N, H, W) → (N, H, W).
    """
    p = _pad_symmetric(x[:, None], 1)[:, 0]
    h, w = x.shape[-2:]
    smooth_x = p[:, :, 0:w] + 2 * p[:, :, 1:w + 1] + p[:, :, 2:w + 2]  # (N, H+2, W)
    smooth_y = p[:, 0:h] + 2 * p[:, 1:h + 1] + p[:, 2:h + 2]  # (N, H, W+2)
    gy = (smooth_x[:, 0:h] - smooth_x[:, 2:h + 2]) / 4
    gx = (smooth_y[:, :, 0:w] - smooth_y[:, :, 2:w + 2]) / 4
    out = torch.sqrt((gx * gx + gy * gy) / 2)
    if zero_border:
        out[:, 0], out[:, -1], out[:, :, 0], out[:, :, -1] = 0, 0, 0, 0
    return out


def gradient_map(blurred: torch.Tensor, zero_border: bool = False) -> torch.Tensor:
    """Step 2: grad = minmax(sobel_magnitude(blurred)). The original names it 'edges'. (N, H, W) in [0, 1]."""
    return minmax(sobel_magnitude(blurred, zero_border))


def resize_low(low: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Step 3: bilinear resize (N, h, w) → (N, H, W), PIL 'F' / align_corners=False convention (no antialias)."""
    if tuple(low.shape[-2:]) == tuple(size):
        return low.clone()
    return F.interpolate(low[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def region_of_interest(low_up: torch.Tensor, roi_percentile: float = 85.0) -> torch.Tensor:
    """Step 3: roi = low_up > P_roi(low_up) per map. (N, H, W) → bool."""
    return low_up > percentile(low_up, roi_percentile).view(-1, 1, 1)


def growing_bounds(grad: torch.Tensor, roi: torch.Tensor, percentiles: tuple[float, float] = (25.0, 75.0),
                   replace_zero: bool = False, raw: torch.Tensor | None = None) -> torch.Tensor:
    """Step 4: (lower, upper) = percentiles of grad inside the roi → (N, 2).

    A bound that is undefined (empty roi) is replaced by the same percentile of the whole grad map; with
    `replace_zero=True` (the original's `if not lower` rule) a bound equal to 0 is replaced too.
    raw: the roi percentiles if already computed (N, 2), to skip the sort.
    """
    bounds = percentile(grad, percentiles, roi) if raw is None else raw
    bad = torch.isnan(bounds)
    if replace_zero:
        bad |= bounds == 0
    if bool(bad.any()):
        bounds = torch.where(bad, percentile(grad, percentiles), bounds)
    return bounds


def focal_points_global(low_up: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """Step 5 'global': the n largest low_up pixels per map (n = round(√H) by default) → (N, n, 2) long (x, y).

    Sorted by decreasing value (the original's argpartition order is arbitrary).
    """
    _, h, w = low_up.shape
    n = min(n or round(math.sqrt(h)), h * w)
    index = torch.topk(low_up.flatten(1), n, dim=1).indices
    return torch.stack([index % w, index // w], dim=-1)


def focal_points_local(low: torch.Tensor, size: tuple[int, int], threshold: float | None = None,
                       areas: str = "small", strict_original: bool = False) -> torch.Tensor:
    """Step 5 'local': local maxima of the low map above a threshold, nearest-upsampled to `size`.

    threshold None → (max + min)/2 of each map's maxima values; kept: maxima ≥ threshold (strict_original:
    (maxima · low) > threshold). areas 'small' skeletonizes each upsampled block.
    Returns (N, n_max, 2) long (x, y) in row-major order, padded with -1.
    """
    maxima = local_maxima(low)
    if threshold is None:
        top = torch.where(maxima, low, torch.full_like(low, -math.inf)).flatten(1).max(1).values
        bottom = torch.where(maxima, low, torch.full_like(low, math.inf)).flatten(1).min(1).values
        thr = ((top + bottom) / 2).view(-1, 1, 1)
    else:
        thr = torch.full((low.shape[0], 1, 1), float(threshold), dtype=low.dtype, device=low.device)
    keep = (maxima.to(low.dtype) * low > thr) if strict_original else (maxima & (low >= thr))
    up = F.interpolate(keep[:, None].to(low.dtype), size=tuple(size), mode="nearest-exact")[:, 0] > 0
    if areas == "small":
        up = skeletonize(up)
    return mask_coordinates(up)


def focal_points(low: torch.Tensor, low_up: torch.Tensor, params: PipelineParams) -> torch.Tensor:
    """Step 5 per `params.focal_scope` → (N, n, 2) long (x = col, y = row), -1 padding for 'local'."""
    if params.focal_scope == "global":
        return focal_points_global(low_up, params.n_focal)
    return focal_points_local(low, tuple(low_up.shape[-2:]), params.maxima_threshold, params.maxima_areas,
                              params.strict_original)


def region_growing(grad: torch.Tensor, seeds: torch.Tensor, bounds: torch.Tensor,
                   backend: str = "auto") -> torch.Tensor:
    """Step 6: pixels 4-connected to a seed through lower ≤ grad ≤ upper. → (N, H, W) float {0, 1}.

    grad (N, H, W); seeds (N, n, 2) (x, y) with -1 padding; bounds (N, 2). Seeds outside the range grow nothing.
    """
    lower, upper = bounds[:, 0].view(-1, 1, 1), bounds[:, 1].view(-1, 1, 1)
    inside = (grad >= lower) & (grad <= upper)
    return grow_from_seeds(inside, seeds, backend).to(grad.dtype)


def full_segment(segmented: torch.Tensor, grad: torch.Tensor, roi: torch.Tensor, upper: torch.Tensor,
                 hole_area: int = 256, fill_border: bool = False, backend: str = "auto") -> torch.Tensor:
    """Steps 7-8: (segmented ∪ (grad ≥ upper ∧ roi)) with background holes < hole_area filled → float {0, 1}.

    upper: (N,). fill_border=True also fills small border pieces (skimage `remove_small_holes`).
    """
    roi_edges = (grad >= upper.view(-1, 1, 1)) & roi
    mask = (segmented > 0) | roi_edges
    return fill_holes(mask, hole_area, fill_border, backend).to(segmented.dtype)


def pil_uint8_bilinear(low: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The original's merge-time resize: minmax → uint8 (truncated) → PIL bilinear (two passes, each rounded).

    (N, h, w) → (N, H, W) float holding integers 0..255. Bit-exact with PIL for these upsampling factors.
    """
    n, h, w = low.shape
    x = torch.floor(minmax(low) * 255)[:, None]
    if w != size[1]:
        x = torch.floor(F.interpolate(x, size=(h, size[1]), mode="bilinear", align_corners=False) + 0.5)
    if h != size[0]:
        x = torch.floor(F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False) + 0.5)
    return x.clamp(0, 255)[:, 0]


def merge_maps(segment: torch.Tensor, low: torch.Tensor, low_up: torch.Tensor, merge_type: str = "blend",
               alpha: float = 0.5, strict_original: bool = False) -> torch.Tensor:
    """Step 9: the refined CAM (N, H, W) in [0, 1].

    segment (N, H, W) {0, 1}; low (N, h, w) raw; low_up (N, H, W) its bilinear resize.
    blend = α·minmax(segment) + (1 − α)·minmax(low_up); multiply = their product.
    Special cases: an empty segment → minmax(low_up); a blank low → the segment; both blank → zeros.
    "Blank" low: constant (vizlab) or no positive pixel (strict_original).
    """
    seg_blank = ~(segment.flatten(1) > 0).any(1)
    if strict_original:
        low_blank = ~(low.flatten(1) > 0).any(1)
        low_n = minmax(pil_uint8_bilinear(low, tuple(segment.shape[-2:])))
    else:
        flat = low.flatten(1)
        low_blank = flat.max(1).values == flat.min(1).values
        low_n = minmax(low_up)
    seg_n = minmax(segment)
    merged = seg_n * low_n if merge_type == "multiply" else alpha * seg_n + (1 - alpha) * low_n
    seg_blank, low_blank = seg_blank.view(-1, 1, 1), low_blank.view(-1, 1, 1)
    if bool(seg_blank.any()):
        merged = torch.where(seg_blank & ~low_blank, low_n if not strict_original else minmax(low_up), merged)
    merged = torch.where(low_blank & ~seg_blank, segment, merged)
    return torch.where(seg_blank & low_blank, torch.zeros_like(merged), merged)


def keep_mask(merged: torch.Tensor, filter_type: str = "percentage", percentage: float = 15.0,
              threshold: float = 0.6, strict_original: bool = False) -> torch.Tensor:
    """Step 10 mask: minmax(merged) > t → (N, H, W) bool.

    'percentage': t = sorted(map)[int((1 − p/100)·H·W)] with map = minmax(merged) (vizlab) or merged itself
    (strict_original, the original's bug); with distinct values this keeps p % of the pixels less one.
    'threshold': t = `threshold`.
    """
    norm = minmax(merged)
    if filter_type == "threshold":
        return norm > threshold
    n = merged[0].numel()
    position = min(int((1 - percentage / 100) * n), n - 1)
    source = merged if strict_original else norm
    t = torch.kthvalue(source.flatten(1), position + 1, dim=1).values.view(-1, 1, 1)
    return norm > t


def crop_image(image: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Step 10: zero the image outside `keep`. image (N, C, H, W), keep (N, H, W) bool → (N, C, H, W)."""
    return image * keep[:, None].to(image.dtype)


# --- the whole pipeline ----------------------------------------------------------------------------------------
def _as_tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a tensor or array; got {type(value).__name__}.") from exc


def _check_inputs(image: torch.Tensor, low: torch.Tensor, high: torch.Tensor, params: PipelineParams) -> None:
    shapes = f"image {tuple(image.shape)}, low {tuple(low.shape)}, high {tuple(high.shape)}"
    if image.dim() != 4 or low.dim() != 3 or high.dim() != 3:
        raise InputError(f"refine expects image (N, C, H, W), low (N, h, w) and high (N, H, W); got {shapes}. "
                         "For one image, add a batch dimension with .unsqueeze(0).")
    if not (image.shape[0] == low.shape[0] == high.shape[0]):
        raise InputError(f"refine: image, low and high must have the same batch size; got {shapes}.")
    if tuple(image.shape[-2:]) != tuple(high.shape[-2:]):
        raise InputError(f"refine: image and high must have the same H×W; got {shapes}.")
    h, w = high.shape[-2:]
    if min(h, w) < params.box_size or min(h, w) < 3 or min(low.shape[-2:]) < 1:
        raise InputError(f"refine: maps are too small ({shapes}); H and W must be >= max(3, box_size).")
    devices = {t.device for t in (image, low, high)}
    if len(devices) > 1:
        raise InputError(f"refine: image, low and high must be on one device; got {sorted(map(str, devices))}.")
    for name, t in (("image", image), ("low", low), ("high", high)):
        if t.is_complex() or t.dtype == torch.bool:
            raise InputError(f"refine: {name} must be a real-valued tensor; got dtype {t.dtype}.")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InputError(f"refine: {name} contains NaN or infinite values.")


def refine(image: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
           params: PipelineParams | None = None) -> dict[str, torch.Tensor]:
    """Run the whole HR-CAM refinement on a batch and return every step by name.

    image: (N, C, H, W) float (the original used raw 0-255 pixels; vizlab passes [0, 1]), only cropped.
    low: (N, h, w) low-resolution CAM (14×14 for the DenseNet-FCN). high: (N, H, W) high-resolution CAM.
    Returns tensors on the inputs' device, floats in high's dtype (float32 if high is not floating):
      image, high (the inputs, for figures) · blurred (N,H,W) · low (N,h,w) · low_resized (N,H,W) · edges (N,H,W): the gradient map, as the original
      names it · roi (N,H,W) bool · bounds (N,2) (lower, upper) used for growing · focal_points (N,n,2) long
      (x = col, y = row; -1 padding) · segmented (N,H,W) {0,1} · roi_edges (N,H,W) bool · full_segment (N,H,W)
      {0,1} · merged (N,H,W) in [0,1]: the refined CAM · keep (N,H,W) bool · result (N,C,H,W).
    """
    params = params if params is not None else PipelineParams()
    if not isinstance(params, PipelineParams):
        raise ConfigError(f"params must be a PipelineParams; got {type(params).__name__}. "
                          "Use PipelineParams.from_dict(...) for a mapping.")
    image, low, high = _as_tensor("image", image), _as_tensor("low", low), _as_tensor("high", high)
    _check_inputs(image, low, high, params)
    out_dtype = high.dtype if high.is_floating_point() else torch.float32
    work = torch.float64 if high.dtype == torch.float64 else torch.float32
    strict = params.strict_original
    size = tuple(high.shape[-2:])
    with torch.no_grad():
        low_w, high_w = low.to(work), high.to(work)
        blurred = box_blur(high_w, params.box_size)
        grad = gradient_map(blurred, zero_border=strict)
        low_up = resize_low(low_w, size)
        roi = region_of_interest(low_up, params.roi_percentile)
        raw_bounds = percentile(grad, params.bounds_percentiles, roi)
        bounds = growing_bounds(grad, roi, params.bounds_percentiles, replace_zero=strict, raw=raw_bounds)
        seeds = focal_points(low_w, low_up, params)
        segmented = region_growing(grad, seeds, bounds, params.backend)
        # the original thresholds its edges with the bound before region_growing's silent 0-replacement
        upper = raw_bounds[:, 1] if strict else bounds[:, 1]
        roi_edges = (grad >= upper.view(-1, 1, 1)) & roi
        filled = full_segment(segmented, grad, roi, upper, params.hole_area, strict, params.backend)
        merged = merge_maps(filled, low_w, low_up, params.merge_type, params.merge_alpha, strict)
        keep = keep_mask(merged, params.filter_type, params.filter_percentage, params.filter_threshold, strict)
        result = crop_image(image, keep)
    cast = {"blurred": blurred, "low_resized": low_up, "edges": grad, "bounds": bounds, "segmented": segmented,
            "full_segment": filled, "merged": merged}
    steps: dict[str, torch.Tensor] = {k: v.to(out_dtype) for k, v in cast.items()}
    steps.update(image=image, high=high, low=low, roi=roi, focal_points=seeds, roi_edges=roi_edges, keep=keep, result=result)
    return {k: steps[k] for k in ("image", "high", *STEP_KEYS[:8], "roi_edges", *STEP_KEYS[8:10], "keep", STEP_KEYS[10])}
