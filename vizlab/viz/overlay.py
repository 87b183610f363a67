"""Heatmap overlays (OpenCV JET), captions, frame strips and GIFs. All images are uint8 RGB."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from vizlab.io import write_bytes_atomic


def to_numpy_map(saliency: torch.Tensor | np.ndarray) -> np.ndarray:
    """Tensor or array in [0, 1] → float32 numpy array."""
    if isinstance(saliency, torch.Tensor):
        saliency = saliency.detach().float().cpu().numpy()
    return np.clip(np.asarray(saliency, dtype=np.float32), 0, 1)


def to_uint8_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) float in [0, 1] tensor or (H, W, 3) array → (H, W, 3) uint8 RGB."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu()
        if image.dim() == 3 and image.shape[0] in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.numpy()
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2)
    return np.ascontiguousarray(image)


def colorize(saliency: np.ndarray, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """(H, W) map in [0, 1] → (H, W, 3) uint8 RGB colour image."""
    bgr = cv2.applyColorMap((to_numpy_map(saliency) * 255 + 0.5).astype(np.uint8), colormap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, saliency: np.ndarray, power: float = 0.8,
            colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Blend a JET heatmap onto `image` with per-pixel alpha = saliency**power.

    Low-saliency pixels keep the photo; salient ones take the colour (the video
    perturbation seed's rule, (1 − m^0.8)·frame + m^0.8·jet(m)).
    """
    image = to_uint8_image(image)
    sal = to_numpy_map(saliency)
    if sal.shape != image.shape[:2]:
        sal = cv2.resize(sal, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    alpha = (sal**power)[..., None]
    out = (1 - alpha) * image.astype(np.float32) + alpha * colorize(sal, colormap).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def add_caption(image: np.ndarray, text: str, height: int = 22) -> np.ndarray:
    """Put `text` in a black bar above `image`."""
    bar = np.zeros((height, image.shape[1], 3), np.uint8)
    scale = max(0.35, min(0.6, image.shape[1] / 500))
    cv2.putText(bar, text, (4, height - 7), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, image], axis=0)


def frame_strip(frames: Sequence[np.ndarray], per_row: int = 8, gap: int = 2) -> np.ndarray:
    """Tile equally sized (H, W, 3) frames into rows of `per_row` with a white gap."""
    h, w = frames[0].shape[:2]
    rows = (len(frames) + per_row - 1) // per_row
    cols = min(per_row, len(frames))
    canvas = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, per_row)
        canvas[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = frame
    return canvas


def clip_overlays(frames: np.ndarray | torch.Tensor, saliency: np.ndarray | torch.Tensor,
                  power: float = 0.8) -> list[np.ndarray]:
    """(T, H, W, 3) or (3, T, H, W) frames + (T, H, W) map → T overlay frames."""
    if isinstance(frames, torch.Tensor) and frames.dim() == 4 and frames.shape[0] == 3:
        frames = frames.permute(1, 0, 2, 3)  # (T, 3, H, W)
    sal = to_numpy_map(saliency)
    return [overlay(to_uint8_image(frames[t]), sal[t], power) for t in range(sal.shape[0])]


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV failure
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG, atomically."""
    return write_bytes_atomic(path, encode_png(image))


def save_gif(path: str | Path, frames: Sequence[np.ndarray], fps: float = 8.0) -> Path:
    """Write RGB uint8 frames as a looping GIF, atomically."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=int(1000 / fps), loop=0)
    return write_bytes_atomic(path, buf.getvalue())


def save_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: float = 8.0) -> Path:
    """Write RGB uint8 frames as an MP4 (OpenCV, codec mp4v), atomically."""
    import os

    from vizlab.io import temp_file_next_to

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    fd, tmp = temp_file_next_to(path, suffix=".mp4")
    os.close(fd)
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    try:
        if not writer.isOpened():
            raise RuntimeError("OpenCV could not open an mp4v video writer")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        os.replace(tmp, path)
    finally:
        writer.release()
        Path(tmp).unlink(missing_ok=True)
    return path
