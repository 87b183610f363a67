"""Image sources: the embedded skimage samples, an ImageNet-style class-folder tree, one image path.

Every dataset yields dicts {"image": (3, S, S) float in [0, 1], "label": int (-1 if unknown),
"name": str}. Normalisation for the model is applied later, batched, on the model's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vizlab.errors import ConfigError, InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
SAMPLE_NAMES = ("chelsea", "coffee", "astronaut", "rocket", "cat", "hubble_deep_field")
RESIZE_MODES = ("squash", "center_crop")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; a clear error names an unreadable file."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Image file not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise InputError(f"Could not decode image {path}: the file is corrupt or not an image.")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    """Grey, RGBA or float images → (H, W, 3) uint8 RGB."""
    if img.dtype != np.uint8:
        img = np.clip(img * (255 if img.max() <= 1.0 else 1), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def preprocess(img: np.ndarray, size: int, resize: str = "squash") -> torch.Tensor:
    """(H, W, 3) uint8 RGB → (3, size, size) float in [0, 1].

    resize="squash" (default) scales the whole image to size² (aspect not kept, the heatmap
    covers the whole picture); "center_crop" scales the shorter side to size/0.875 then crops.
    """
    if resize not in RESIZE_MODES:
        raise ConfigError(f"dataset.resize must be one of {RESIZE_MODES}, got {resize!r}.")
    x = torch.from_numpy(to_rgb_uint8(img)).permute(2, 0, 1).float()[None] / 255
    h, w = x.shape[-2:]
    if resize == "squash":
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    else:
        scale = size / 0.875 / min(h, w)
        x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))),
                          mode="bilinear", antialias=True, align_corners=False)
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        x = x[..., top:top + size, left:left + size]
    return x[0].clamp(0, 1)


class _ImageDataset(Dataset):
    def __init__(self, size: int, resize: str) -> None:
        if resize not in RESIZE_MODES:
            raise ConfigError(f"dataset.resize must be one of {RESIZE_MODES}, got {resize!r}.")
        self.size, self.resize = size, resize
        self.names: list[str] = []
        self.labels: list[int] = []
        self.class_names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        return {"image": preprocess(self.load(index), self.size, self.resize),
                "label": self.labels[index], "name": self.names[index]}


class SampleImages(_ImageDataset):
    """The embedded sample photos from `skimage.data` (chelsea → 285 Egyptian cat, coffee → 967)."""

    def __init__(self, size: int, images: Sequence[str] = SAMPLE_NAMES[:4], resize: str = "squash") -> None:
        super().__init__(size, resize)
        bad = [n for n in images if n not in SAMPLE_NAMES]
        if bad:
            raise ConfigError(f"Unknown sample image(s) {bad}. Valid: {', '.join(SAMPLE_NAMES)}.")
        if not images:
            raise ConfigError("dataset.images is empty; name at least one sample image.")
        self.names = list(images)
        self.labels = [-1] * len(self.names)

    def load(self, index: int) -> np.ndarray:
        import skimage.data

        return to_rgb_uint8(getattr(skimage.data, self.names[index])())


class ImageFolder(_ImageDataset):
    """ImageNet-style tree `root/<class>/<image>`; labels index the sorted class-folder names.

    If every class folder name is an integer (e.g. "285"), that integer is the label instead, so
    `task.target=label` explains the true ImageNet class.
    """

    def __init__(self, root: str | Path, size: int, resize: str = "squash",
                 extensions: Sequence[str] = IMAGE_EXTENSIONS) -> None:
        super().__init__(size, resize)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise ConfigError(f"dataset.root is not a directory: {self.root}")
        exts = tuple(e.lower() for e in extensions)
        classes = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        numeric = bool(classes) and all(c.isdigit() for c in classes)
        self.paths: list[Path] = []
        for idx, cls in enumerate(classes):
            for path in sorted((self.root / cls).rglob("*")):
                if path.suffix.lower() in exts:
                    self.paths.append(path)
                    self.labels.append(int(cls) if numeric else idx)
                    self.names.append(f"{cls}/{path.stem}")
        if not self.paths:
            raise ConfigError(f"No images ({', '.join(exts)}) found under {self.root}/<class>/.")
        self.class_names = classes

    def load(self, index: int) -> np.ndarray:
        return read_image(self.paths[index])


class SingleImage(_ImageDataset):
    """One image file (label -1)."""

    def __init__(self, path: str | Path, size: int, resize: str = "squash") -> None:
        super().__init__(size, resize)
        self.path = Path(path).expanduser()
        read_image(self.path)  # fail fast on a missing or corrupt file
        self.names, self.labels = [self.path.stem], [-1]

    def load(self, index: int) -> np.ndarray:
        return read_image(self.path)
