"""Synthetic motion clips with known per-frame object masks: spatio-temporal ground truth.

Each clip shows one textured object sliding in a straight line over a cluttered background that
drifts in its own random direction. The class is decided only by the direction the object moves
(right, left, down, up). Everything else is drawn the same way for every class: the object's
shape (disc, square, triangle, cross), colour, size, stripe texture, start position and speed;
the background's colour noise, its bright distractor strokes, and its drift (any direction,
0 to `BG_SPEED` of the image side per frame). The object's position averaged over the clip
carries no class information (tested), the background motion is a decoy, and only the order of
the object's positions across frames decides. As in `synthetic_shapes`, the object is brighter
than the background.

Sample `i` of `SyntheticMotion(seed=s)` comes from `np.random.default_rng([s, i])`; labels
cycle through the classes (`i % K`). Items are dicts {"image": (3, T, S, S) float in [0, 1],
"label": int, "name": "motion_00012", "mask": (T, S, S) bool (the object in every frame)}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vizlab.data.synthetic_shapes import CLASS_NAMES as SHAPES
from vizlab.data.synthetic_shapes import _background, _colour, _distractors, draw_shape
from vizlab.errors import ConfigError

CLASS_NAMES: tuple[str, ...] = ("right", "left", "down", "up")
DIRECTIONS: dict[str, tuple[float, float]] = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}
MIN_SIZE, MIN_FRAMES = 32, 4
SCALE = (0.2, 0.3)       # object extent as a fraction of the side
SPEED = (0.035, 0.06)    # object speed, fraction of the side per frame (clips of up to SPEED_FRAMES frames)
SPEED_FRAMES = 8         # longer clips move the object more slowly, so it travels as far as in 8 frames
BG_SPEED = 0.05          # background drift up to this fraction of the side per frame


def _stripes(size: int, centre: tuple[float, float], angle: float, period: float) -> np.ndarray:
    """(S, S) float32 texture in {0.7, 1.0}: stripes fixed to the object (they move with it)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    u = (xs - centre[0]) * np.cos(angle) + (ys - centre[1]) * np.sin(angle)
    return np.where(np.sin(2 * np.pi * u / period) >= 0, 1.0, 0.7).astype(np.float32)


def render_clip(rng: np.random.Generator, direction: str, size: int = 48,
                frames: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """One clip: ((T, S, S, 3) uint8 RGB frames, (T, S, S) bool object masks) moving `direction`."""
    dx, dy = DIRECTIONS[direction]
    steps = frames - 1
    bg_angle = float(rng.uniform(0, 2 * np.pi))
    bg_speed = float(rng.uniform(0, BG_SPEED)) * size
    margin = int(np.ceil(bg_speed * steps)) + 1
    canvas = _background(rng, size + 2 * margin)
    _distractors(rng, canvas)

    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    extent = float(rng.uniform(*SCALE)) * size
    angle = float(rng.uniform(0, 2 * np.pi))
    colour = _colour(rng)
    tex_angle, period = float(rng.uniform(0, np.pi)), float(rng.uniform(0.2, 0.35)) * extent
    speed = float(rng.uniform(*SPEED)) * size * min(1.0, (SPEED_FRAMES - 1) / max(1, steps))
    travel = speed * steps
    reach = extent * 0.62 + 1                          # covers every shape's circumradius
    along = float(rng.uniform(reach, size - reach - travel))  # start on the motion axis
    across = float(rng.uniform(reach, size - reach))
    if dx:
        start = (along if dx > 0 else size - along, across)
    else:
        start = (across, along if dy > 0 else size - along)

    clip = np.empty((frames, size, size, 3), np.float32)
    masks = np.zeros((frames, size, size), bool)
    for t in range(frames):
        ox = margin + int(round(np.cos(bg_angle) * bg_speed * t))
        oy = margin + int(round(np.sin(bg_angle) * bg_speed * t))
        frame = canvas[oy:oy + size, ox:ox + size].copy()
        centre = (start[0] + dx * speed * t, start[1] + dy * speed * t)
        mask8 = np.zeros((size, size), np.uint8)
        draw_shape(mask8, shape, centre, extent, angle)
        m = mask8.astype(bool)
        frame[m] = colour * _stripes(size, centre, tex_angle, period)[m][:, None]
        clip[t], masks[t] = frame, m
    clip += rng.normal(0, 0.03, clip.shape).astype(np.float32)
    return (np.clip(clip, 0, 1) * 255 + 0.5).astype(np.uint8), masks


def _check(num_samples: int, size: int, frames: int, classes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"dataset.num_samples must be an integer >= 1, got {num_samples!r}.")
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
        raise ConfigError(f"dataset.size must be an integer >= {MIN_SIZE}, got {size!r}.")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < MIN_FRAMES:
        raise ConfigError(f"dataset.frames must be an integer >= {MIN_FRAMES}, got {frames!r}.")
    classes = tuple(classes)
    bad = [c for c in classes if c not in CLASS_NAMES]
    if bad:
        raise ConfigError(f"Unknown motion class(es) {bad}. Valid: {', '.join(CLASS_NAMES)}.")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ConfigError(f"dataset.classes must name at least two distinct directions, got {list(classes)}.")
    return classes


class SyntheticMotion(Dataset):
    """`num_samples` clips of `frames` frames (default 8) at side `size` (default 48), one moving object each.

    classes: direction names, label = position in this tuple (default: right, left, down, up).
    out_size / out_frames: resize clips (trilinear) and masks (nearest) for a model's input; None keeps
    the generated size. Deterministic from (seed, index).
    """

    def __init__(self, num_samples: int, size: int = 48, frames: int = 8, seed: int = 0,
                 classes: Sequence[str] = CLASS_NAMES, out_size: int | None = None,
                 out_frames: int | None = None) -> None:
        self.classes = _check(num_samples, size, frames, classes)
        for key, value in (("out_size", out_size), ("out_frames", out_frames)):
            if value is not None and value < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}.")
        self.num_samples, self.size, self.frames, self.seed = num_samples, size, frames, int(seed)
        self.out_size, self.out_frames = out_size or size, out_frames or frames

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    def __len__(self) -> int:
        return self.num_samples

    def label(self, index: int) -> int:
        return index % len(self.classes)

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(clip (T, S, S, 3) uint8, masks (T, S, S) bool, label) of sample `index`."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        label = self.label(index)
        rng = np.random.default_rng([self.seed, index])
        clip, masks = render_clip(rng, self.classes[label], self.size, self.frames)
        return clip, masks, label

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip, masks, label = self.generate(index)
        x = torch.from_numpy(clip).permute(3, 0, 1, 2).float() / 255  # (3, T, S, S)
        m = torch.from_numpy(masks)
        out = (self.out_frames, self.out_size, self.out_size)
        if out != (self.frames, self.size, self.size):
            x = F.interpolate(x[None], size=out, mode="trilinear", align_corners=False)[0].clamp(0, 1)
            m = F.interpolate(m[None, None].float(), size=out, mode="nearest")[0, 0].bool()
        return {"image": x, "label": label, "name": f"motion_{index:05d}", "mask": m}


def make_motion_split(num_samples: int, size: int = 48, frames: int = 8, seed: int = 0,
                      classes: Sequence[str] = CLASS_NAMES) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A whole split: clips (N, 3, T, S, S) uint8, labels (N,) long, masks (N, T, S, S) bool.

    Sample i equals `SyntheticMotion(num_samples, size, frames, seed, classes)[i]` (clip = uint8 / 255).
    """
    ds = SyntheticMotion(num_samples, size, frames, seed, classes)
    clips = np.empty((num_samples, frames, size, size, 3), np.uint8)
    masks = np.empty((num_samples, frames, size, size), bool)
    labels = np.empty(num_samples, np.int64)
    for i in range(num_samples):
        clips[i], masks[i], labels[i] = ds.generate(i)
    return (torch.from_numpy(clips).permute(0, 4, 1, 2, 3).contiguous(), torch.from_numpy(labels),
            torch.from_numpy(masks))


def build_synthetic_motion(cfg: Mapping[str, Any], input_size: int, frames: int | None) -> SyntheticMotion:
    """`dataset=synthetic_motion` for build_dataset: keys num_samples, size, frames (null: the model's), seed."""
    size = cfg.get("size") or input_size
    length = cfg.get("frames") or frames or 8
    classes = cfg.get("classes") or CLASS_NAMES
    return SyntheticMotion(cfg.get("num_samples", 16), size, length, cfg.get("seed", 0), list(classes),
                           out_size=input_size, out_frames=frames or length)


__all__ = ["CLASS_NAMES", "DIRECTIONS", "SyntheticMotion", "build_synthetic_motion", "make_motion_split",
           "render_clip"]
