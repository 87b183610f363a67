"""Synthetic shapes with known object masks: ground truth for localisation metrics.

Each image holds one filled object on a cluttered background. The class is decided only by the
object's shape (disc, square, triangle, cross); its colour, scale, rotation and position are
random and drawn the same way for every class. The background is smooth, darker colour noise
(values in [0, 0.5]) plus 2-5 thin distractor strokes (lines and arcs, never a filled class
shape) drawn with colours from the same distribution as the objects (any hue and saturation,
HSV value 0.7-1), so neither colour nor clutter gives the class away. Objects are always
brighter than the background: with random contrast polarity a small CNN's gradients cancel
across images and training stalls for hundreds of steps.

Sample `i` of `SyntheticShapes(seed=s)` is generated from `np.random.default_rng([s, i])`, so
any sample can be regenerated on its own; labels cycle through the classes (`i % K`), so every
prefix of the dataset is balanced. Items are dicts
{"image": (3, S, S) float in [0, 1], "label": int, "name": "shape_00012", "mask": (S, S) bool}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vizlab.errors import ConfigError

CLASS_NAMES: tuple[str, ...] = ("disc", "square", "triangle", "cross")
MIN_SIZE = 32
SCALE = (14 / 64, 26 / 64)  # object extent as a fraction of the image side (14-26 px at 64)
BG_MAX = 0.5               # background values lie in [0, BG_MAX]; objects and strokes are brighter
_SHIFT = 4                  # cv2 sub-pixel bits
_ONE = 1 << _SHIFT


def _outline(shape: str, extent: float, angle: float) -> np.ndarray:
    """Polygon (V, 2) centred on 0 for a shape whose bounding extent is about `extent` px."""
    h = extent / 2
    if shape == "square":
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * (0.85 * h)
    elif shape == "triangle":
        t = np.deg2rad([90.0, 210.0, 330.0])
        pts = np.stack([np.cos(t), np.sin(t)], 1) * (1.15 * h)
    elif shape == "cross":
        a = 0.32
        pts = np.array([[a, 1], [a, a], [1, a], [1, -a], [a, -a], [a, -1], [-a, -1], [-a, -a],
                        [-1, -a], [-1, a], [-a, a], [-a, 1]], float) * h
    else:  # pragma: no cover - checked by the dataset
        raise ConfigError(f"Unknown shape {shape!r}. Valid: {', '.join(CLASS_NAMES)}.")
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32)


def draw_shape(mask: np.ndarray, shape: str, centre: tuple[float, float], extent: float, angle: float) -> None:
    """Fill `shape` into the (S, S) uint8 `mask` with value 1 (sub-pixel accurate, no anti-aliasing)."""
    if shape == "disc":
        cx, cy = _fixed(np.asarray(centre))
        cv2.circle(mask, (int(cx), int(cy)), int(round(extent / 2 * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
        return
    pts = _fixed(_outline(shape, extent, angle) + np.asarray(centre))
    cv2.fillPoly(mask, [pts], 1, cv2.LINE_8, _SHIFT)


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A random bright colour (3,) float32: any hue and saturation, HSV value in [0.7, 1]."""
    hue, sat, val = rng.random() * 6, rng.random(), rng.uniform(0.7, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + hue) % 6
    return (val - val * sat * np.clip(np.minimum(k, 4 - k), 0, 1)).astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(S, S, 3) float32 smooth dark colour noise in [0, BG_MAX]."""
    grid = int(rng.integers(2, 6))
    coarse = rng.random((grid, grid, 3), dtype=np.float32)
    bg = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    fine = rng.random((grid * 3, grid * 3, 3), dtype=np.float32) - 0.5
    bg += 0.3 * cv2.resize(fine, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.clip(bg, 0, 1) * BG_MAX


def _distractors(rng: np.random.Generator, img: np.ndarray) -> None:
    """Draw 2-5 thin lines and arcs (not class shapes) in random colours into `img` in place."""
    size = img.shape[0]
    unit = size / 64
    for _ in range(int(rng.integers(2, 6))):
        colour = tuple(float(v) for v in _colour(rng))
        thick = max(1, int(round(rng.integers(1, 3) * unit)))
        if rng.random() < 0.6:
            p, q = _fixed(rng.uniform(-0.1, 1.1, (2, 2)) * size)
            cv2.line(img, tuple(map(int, p)), tuple(map(int, q)), colour, thick, cv2.LINE_AA, _SHIFT)
        else:
            centre = tuple(map(int, _fixed(rng.uniform(0, 1, 2) * size)))
            axes = tuple(map(int, _fixed(rng.uniform(0.08, 0.4, 2) * size)))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), start, start + float(rng.uniform(60, 240)),
                        colour, thick, cv2.LINE_AA, _SHIFT)


def render(rng: np.random.Generator, shape: str, size: int = 64,
           scale: tuple[float, float] = SCALE) -> tuple[np.ndarray, np.ndarray]:
    """One sample: ((S, S, 3) uint8 RGB image, (S, S) bool object mask) for `shape`."""
    img = _background(rng, size)
    _distractors(rng, img)
    extent = float(rng.uniform(*scale)) * size
    angle = float(rng.uniform(0, 2 * np.pi))
    reach = extent * 0.62 + 1  # covers every shape's circumradius (triangle: 0.575 extent)
    centre = (float(rng.uniform(reach, size - reach)), float(rng.uniform(reach, size - reach)))
    mask8 = np.zeros((size, size), np.uint8)
    draw_shape(mask8, shape, centre, extent, angle)
    mask = mask8.astype(bool)
    img[mask] = _colour(rng)
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), mask


def _check(num_samples: int, size: int, classes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"dataset.num_samples must be an integer >= 1, got {num_samples!r}.")
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
        raise ConfigError(f"dataset.size must be an integer >= {MIN_SIZE}, got {size!r}.")
    classes = tuple(classes)
    bad = [c for c in classes if c not in CLASS_NAMES]
    if bad:
        raise ConfigError(f"Unknown shape class(es) {bad}. Valid: {', '.join(CLASS_NAMES)}.")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ConfigError(f"dataset.classes must name at least two distinct shapes, got {list(classes)}.")
    return classes


class SyntheticShapes(Dataset):
    """`num_samples` images of side `size` (default 64), one shape each, deterministic from (seed, index).

    classes: shape names, label = position in this tuple (default: disc, square, triangle, cross).
    out_size: resize images (bilinear) and masks (nearest) to this side, e.g. a model's input size;
    None keeps `size`. The object scale is relative to `size`, so it looks the same at any size.
    """

    def __init__(self, num_samples: int, size: int = 64, seed: int = 0,
                 classes: Sequence[str] = CLASS_NAMES, out_size: int | None = None) -> None:
        self.classes = _check(num_samples, size, classes)
        if out_size is not None and out_size < 1:
            raise ConfigError(f"out_size must be >= 1, got {out_size}.")
        self.num_samples, self.size, self.seed = num_samples, size, int(seed)
        self.out_size = out_size or size

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    def __len__(self) -> int:
        return self.num_samples

    def label(self, index: int) -> int:
        return index % len(self.classes)

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(image (S, S, 3) uint8, mask (S, S) bool, label) of sample `index` at side `size`."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        label = self.label(index)
        rng = np.random.default_rng([self.seed, index])
        image, mask = render(rng, self.classes[label], self.size)
        return image, mask, label

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask, label = self.generate(index)
        x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
        m = torch.from_numpy(mask)
        if self.out_size != self.size:
            x = F.interpolate(x[None], size=(self.out_size,) * 2, mode="bilinear", antialias=True,
                              align_corners=False)[0].clamp(0, 1)
            m = F.interpolate(m[None, None].float(), size=(self.out_size,) * 2, mode="nearest")[0, 0].bool()
        return {"image": x, "label": label, "name": f"shape_{index:05d}", "mask": m}


def make_split(num_samples: int, size: int = 64, seed: int = 0,
               classes: Sequence[str] = CLASS_NAMES) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generate a whole split at once: images (N, 3, S, S) uint8, labels (N,) long, masks (N, S, S) bool.

    Sample i equals `SyntheticShapes(num_samples, size, seed, classes)[i]` (image = uint8 / 255).
    """
    ds = SyntheticShapes(num_samples, size, seed, classes)
    images = np.empty((num_samples, size, size, 3), np.uint8)
    masks = np.empty((num_samples, size, size), bool)
    labels = np.empty(num_samples, np.int64)
    for i in range(num_samples):
        images[i], masks[i], labels[i] = ds.generate(i)
    return (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels),
            torch.from_numpy(masks))


def build_synthetic_shapes(cfg: Mapping[str, Any], input_size: int) -> SyntheticShapes:
    """`dataset=synthetic_shapes` for build_dataset: keys num_samples, size (null: input_size), seed.

    Images are generated at `size` and resized to the model's `input_size` if they differ.
    """
    size = cfg.get("size") or input_size
    classes = cfg.get("classes") or CLASS_NAMES
    return SyntheticShapes(cfg.get("num_samples", 16), size, cfg.get("seed", 0), list(classes),
                           out_size=input_size)


__all__ = ["CLASS_NAMES", "SyntheticShapes", "build_synthetic_shapes", "draw_shape", "make_split", "render"]
