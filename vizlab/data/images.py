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


DEFAULT_MAX_PIXELS = 100_000_000  # dataset.max_pixels: larger images are refused before decoding


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame segment of JPEG bytes, else None."""
    pos = 2
    while pos + 9 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in JPEG_SOF:
            return int.from_bytes(head[pos + 7:pos + 9], "big"), int.from_bytes(head[pos + 5:pos + 7], "big")
        pos += 2 + int.from_bytes(head[pos + 2:pos + 4], "big")
    return None


def header_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) that an encoded image's header claims, read without decoding the pixels
    (PNG and JPEG parsed here, other formats by PIL's header parsers); None if not recognised."""
    raw = data if isinstance(data, bytes) else memoryview(np.ascontiguousarray(data, np.uint8)).tobytes()
    if raw.startswith(PNG_SIGNATURE) and raw[12:16] == b"IHDR":
        return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    if raw.startswith(b"\xff\xd8"):
        size = _jpeg_size(raw)
        if size is not None:
            return size
    import io

    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the size is what we want to see, not PIL's bomb error
    try:
        with Image.open(io.BytesIO(raw)) as image:
            return image.size
    except Exception:
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def check_pixels(data: bytes | np.ndarray, source: str, max_pixels: int = DEFAULT_MAX_PIXELS, hint: str = "") -> None:
    """InputError if the image header of `data` claims more than `max_pixels` pixels (checked
    before decoding, so a 60000×60000 header costs nothing)."""
    size = header_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        w, h = size
        raise InputError(f"{source} claims {w}×{h} pixels ({w * h / 1e6:.0f} MP), more than dataset.max_pixels="
                         f"{max_pixels}; shrink it or raise dataset.max_pixels{hint}.")


def decode_bgr(data: np.ndarray) -> np.ndarray | None:
    """cv2.imdecode of uint8 bytes to (H, W, 3) BGR; None when OpenCV cannot decode them."""
    import cv2

    try:
        return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error:
        return None


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; a clear error names an unreadable file or one
    whose header claims more than `max_pixels` pixels."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Image file not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    check_pixels(data, f"Image {path}", max_pixels)
    bgr = decode_bgr(data)
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
    def __init__(self, size: int, resize: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        if resize not in RESIZE_MODES:
            raise ConfigError(f"dataset.resize must be one of {RESIZE_MODES}, got {resize!r}.")
        self.size, self.resize, self.max_pixels = size, resize, max_pixels
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
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(size, resize, max_pixels)
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
        return read_image(self.paths[index], self.max_pixels)


class SingleImage(_ImageDataset):
    """One image file (label -1)."""

    def __init__(self, path: str | Path, size: int, resize: str = "squash", max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(size, resize, max_pixels)
        self.path = Path(path).expanduser()
        read_image(self.path, max_pixels)  # fail fast on a missing, corrupt or huge file
        self.names, self.labels = [self.path.stem], [-1]

    def load(self, index: int) -> np.ndarray:
        return read_image(self.path, self.max_pixels)
