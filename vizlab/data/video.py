"""Clip sources: video files (decoded with decord) and folders of frame images.

Every dataset yields dicts {"image": (3, T, S, S) float in [0, 1] (unnormalised; the model wrapper
normalises later, on its device), "label": int (-1 if unknown), "name": str}. The same frames are
what clip overlays are drawn on.

Pipeline per item: frame indices from `sample_indices` (uniform · long_range · dense) → decode only
those frames → `resize_frames` (default: shorter side to S / crop_ratio = S·128/112, centre crop
S²) → `to_clip`. Every video is validated when the dataset is built, cheaply (decord reads the
container's frame index without decoding; frame folders are counted and their numbering checked).

Bad input raises one InputError naming the file and the fix — when the dataset is built (no
frames, unreadable container, gap in the numbering, too short) or when a clip is loaded (a corrupt
frame file, an undecodable store blob, a decord decoding error or short batch). With
`skip_bad=True` both kinds are skipped with a warning naming the file and the reason: at build
time the video is left out of the dataset; at load time `dataset[i]` returns the placeholder
{"name", "label", "skipped": reason} (no "image"), which `vizlab.lit.explain_data.collate_loaded`
drops from its batch.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vizlab.data.images import check_pixels, decode_bgr
from vizlab.errors import ConfigError, InputError, unknown_choice
from vizlab.naming import natural_key

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
SAMPLINGS = ("uniform", "long_range", "dense")
CLIP_RESIZE_MODES = ("center_crop", "squash")
DEFAULT_CROP_RATIO = 112 / 128  # shorter side → size · 128/112, then a centre crop of size²
SKIPPED = "skipped"  # key of the placeholder item of a clip that failed to load (skip_bad=True)
SKIP_HINT = "or set dataset.skip_bad=true to skip the clip"

# ---------------------------------------------------------------------------------------------
# Frame indices


def sample_indices(num_frames: int, frames: int, sampling: str = "uniform", allow_short: bool = False,
                   name: str = "video") -> np.ndarray:
    """(T,) int64 indices of the frames forming one clip of a video with `num_frames` frames.

    uniform: T indices spread over the whole video, `np.round(np.linspace(0, n - 1, T))` (round half
    to even). long_range: the video perturbation seed's rule, stride r = floor(n / T), indices
    0, r, 2r, ... < n, keep the last T. dense: T consecutive frames from the centre, starting at
    (n - T) // 2. A video shorter than T raises InputError naming it, unless `allow_short`, which
    takes every frame and repeats the last one (same rule for all samplings).
    """
    if sampling not in SAMPLINGS:
        raise unknown_choice("dataset.sampling", str(sampling), SAMPLINGS)
    if frames < 1:
        raise ConfigError(f"dataset.frames must be >= 1, got {frames}.")
    if num_frames < frames:
        if not allow_short or num_frames < 1:
            raise InputError(short_message(name, num_frames, frames))
        return np.concatenate([np.arange(num_frames), np.full(frames - num_frames, num_frames - 1)])
    if sampling == "uniform":
        return np.round(np.linspace(0, num_frames - 1, frames)).astype(np.int64)
    if sampling == "long_range":
        stride = num_frames // frames
        return np.arange(0, num_frames, stride, dtype=np.int64)[-frames:]
    start = (num_frames - frames) // 2
    return np.arange(start, start + frames, dtype=np.int64)


def short_message(name: str, num_frames: int, frames: int) -> str:
    return (f"{name} has {num_frames} frame(s) but a clip needs {frames}. Drop it, lower dataset.frames, "
            "set dataset.allow_short=true (repeats the last frame) or dataset.skip_bad=true (skips it).")


# ---------------------------------------------------------------------------------------------
# Decoding, resizing


def decode_frame(data: bytes | np.ndarray, source: str) -> np.ndarray:
    """Encoded JPEG/PNG bytes → (H, W, 3) uint8 RGB; InputError naming `source` if undecodable."""
    import cv2

    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray | memoryview) else data
    check_pixels(buf, f"Frame {source}", hint=f", {SKIP_HINT}")
    bgr = decode_bgr(buf)
    if bgr is None:
        raise InputError(f"Could not decode frame {source}: the file is corrupt or not an image. "
                         f"Re-extract or remove it, {SKIP_HINT}.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_frame_file(path: Path) -> np.ndarray:
    """One frame image file → (H, W, 3) uint8 RGB; InputError naming the file if unreadable or corrupt."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"Could not read frame {path}: {exc}. Restore the file, {SKIP_HINT}.") from exc
    return decode_frame(data, str(path))


def resize_frames(frames: Sequence[np.ndarray] | np.ndarray, size: int, resize: str = "center_crop",
                  crop_ratio: float = DEFAULT_CROP_RATIO) -> np.ndarray:
    """T frames (H, W, 3) uint8 → (T, size, size, 3) uint8.

    center_crop (default): scale the shorter side to round(size / crop_ratio) (crop_ratio 0.875:
    112 → 128), then crop the centre size²; squash: scale the whole frame to size². cv2 INTER_AREA
    when shrinking, INTER_LINEAR when enlarging; frames already at the target size are not resampled.
    """
    import cv2

    if resize not in CLIP_RESIZE_MODES:
        raise unknown_choice("dataset.resize", str(resize), CLIP_RESIZE_MODES)
    if not 0 < crop_ratio <= 1:
        raise ConfigError(f"dataset.crop_ratio must be in (0, 1], got {crop_ratio}.")
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for t, frame in enumerate(frames):
        h, w = frame.shape[:2]
        if resize == "squash":
            th, tw = size, size
        else:
            scale = size / crop_ratio / min(h, w)
            th, tw = max(size, round(h * scale)), max(size, round(w * scale))
        if (th, tw) != (h, w):
            interp = cv2.INTER_AREA if th * tw < h * w else cv2.INTER_LINEAR
            frame = cv2.resize(np.ascontiguousarray(frame), (tw, th), interpolation=interp)
        top, left = (th - size) // 2, (tw - size) // 2
        out[t] = frame[top:top + size, left:left + size]
    return out


def to_clip(frames: np.ndarray) -> torch.Tensor:
    """(T, S, S, 3) uint8 → (3, T, S, S) float32 in [0, 1] (x / 255; numpy is ~10x faster here than torch)."""
    clip = np.ascontiguousarray(frames.transpose(3, 0, 1, 2)).astype(np.float32)
    clip /= 255
    return torch.from_numpy(clip)


def gather(unique_frames: np.ndarray, unique: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Frames decoded for sorted `unique` indices → frames for `indices` (repeats allowed)."""
    return unique_frames[np.searchsorted(unique, indices)]


def _decord():
    try:
        import decord
    except ImportError as exc:  # pragma: no cover - decord is an install requirement
        raise ConfigError("Video files need decord: pip install decord==0.6.0 "
                          "(or pack frames with `vizlab pack-frames` on a machine that has it).") from exc
    return decord


def open_video(path: Path, num_threads: int = 0):
    """A decord VideoReader (CPU) for `path`; InputError naming the file if it cannot be opened."""
    decord = _decord()
    if not path.is_file():
        raise InputError(f"Video file not found: {path}")
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=num_threads)
    except Exception as exc:  # decord raises DECORDError/RuntimeError with a C++ trace
        raise InputError(f"Could not open video {path}: the file is corrupt, truncated or not a video "
                         f"({first_line(exc)}). Re-encode it (e.g. ffmpeg -i in.mp4 out.mp4) or set "
                         "dataset.skip_bad=true.") from exc


def video_length(path: Path) -> int:
    """Number of frames in a video, from its container index (no decoding)."""
    reader = open_video(path, num_threads=1)
    n = len(reader)
    del reader
    if n < 1:
        raise InputError(f"Video {path} has no frames. Re-encode it or set dataset.skip_bad=true.")
    return n


def read_video_frames(path: Path, indices: np.ndarray, num_threads: int = 0) -> np.ndarray:
    """Decode only frames `indices` of a video (decord get_batch) → (len(indices), H, W, 3) uint8 RGB.

    InputError naming the file if decord fails, or returns fewer frames than asked or not RGB frames.
    """
    reader = open_video(path, num_threads)
    unique = np.unique(indices)
    try:
        if unique[-1] >= len(reader):
            raise InputError(f"Video {path} has {len(reader)} frames but frame {unique[-1]} was requested: "
                             f"the file changed after the dataset was built. Rebuild it, {SKIP_HINT}.")
        try:
            batch = reader.get_batch(unique.tolist()).asnumpy()
        except Exception as exc:
            raise InputError(f"Could not decode frames {short_list(unique)} of video {path}: the file is "
                             f"corrupt or truncated ({first_line(exc)}). Re-encode it (e.g. ffmpeg -i in.mp4 "
                             f"out.mp4) or remove it, {SKIP_HINT}.") from exc
    finally:
        del reader
    return gather(check_batch(batch, unique, path), unique, indices)


def check_batch(batch: np.ndarray, wanted: Sequence[int] | np.ndarray, path: Path | str) -> np.ndarray:
    """`batch` if it is (len(wanted), H, W, 3) uint8 frames, else InputError naming the video.

    decord can return a short batch for a damaged file instead of raising.
    """
    shape = tuple(batch.shape)
    if len(shape) != 4 or shape[0] != len(wanted) or shape[-1] != 3 or batch.dtype != np.uint8:
        raise InputError(f"decord returned frames of shape {shape} ({batch.dtype}) for the {len(wanted)} "
                         f"frame(s) {short_list(wanted)} asked of video {path}; expected ({len(wanted)}, H, W, 3) "
                         f"uint8. The file is damaged: re-encode it (e.g. ffmpeg -i in.mp4 out.mp4) or remove "
                         f"it, {SKIP_HINT}.")
    return batch


def skip_reason(exc: BaseException) -> str:
    """An InputError's message without the "or set dataset.skip_bad=true ..." advice (it is set)."""
    return str(exc).replace(f", {SKIP_HINT}", "").replace(f" {SKIP_HINT}", "")


def short_list(values: Sequence[int] | np.ndarray, limit: int = 10) -> str:
    """[0, 1, 2, ...] with at most `limit` entries, for messages."""
    values = [int(v) for v in values]
    return f"[{', '.join(map(str, values[:limit]))}{', ...' if len(values) > limit else ''}]"


_DECORD_PREFIX = re.compile(r"\[\d{2}:\d{2}:\d{2}\] \S+?:\d+: ")  # "[09:14:44] src/x.cc:292: "


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message without decord's time/source prefixes (<= 160 chars)."""
    text = str(exc).strip().splitlines()
    line = _DECORD_PREFIX.sub("", text[0]).strip() if text else ""
    return line[:160] or type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Names and labels


def read_label_csv(path: str | Path) -> dict[str, str]:
    """CSV rows `video,label` (optional header row) → {video: raw label}."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"Label CSV not found: {path}. Set dataset.labels to a CSV with rows video,label.")
    out: dict[str, str] = {}
    with path.open(newline="") as fh:
        for line_no, row in enumerate(csv.reader(fh), 1):
            row = [c.strip() for c in row]
            if not row or not any(row) or row[0].startswith("#"):
                continue
            if len(row) < 2 or not row[0] or not row[1]:
                raise ConfigError(f"{path}, line {line_no}: expected `video,label`, got {row!r}.")
            if line_no == 1 and row[0].lower() in ("video", "name") and row[1].lower() in ("label", "class"):
                continue
            if out.get(row[0], row[1]) != row[1]:
                raise ConfigError(f"{path}, line {line_no}: video {row[0]!r} has two labels "
                                  f"({out[row[0]]!r} and {row[1]!r}).")
            out[row[0]] = row[1]
    return out


def csv_lookup(table: Mapping[str, str], name: str) -> str | None:
    """The CSV label for video `name`, matched on the name, its last part or its stem."""
    for key in (name, Path(name).name, Path(name).stem):
        if key in table:
            return table[key]
    return None


def resolve_labels(raw: Sequence[str | None], names: Sequence[str],
                   classes: Sequence[str] | None = None) -> tuple[list[int], list[str]]:
    """Raw label strings (None = unknown) → (int labels, class names).

    With `classes`: a class name maps to its position, an integer string to itself. Without: if
    every raw label is an integer string ("285") it is the label; otherwise labels index the sorted
    distinct names. Mixing integers and names without `classes` is an error.
    """
    known = [r for r in raw if r is not None]
    if classes is not None:
        classes = [str(c) for c in classes]
        pos = {c: i for i, c in enumerate(classes)}
        labels = []
        for r, name in zip(raw, names, strict=True):
            if r is not None and r not in pos and not _is_int(r):
                raise InputError(f"Video {name} has label {r!r}, which is not in dataset.classes "
                                 f"({', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}).")
            labels.append(-1 if r is None else pos[r] if r in pos else int(r))
        return labels, classes
    numeric = [_is_int(r) for r in known]
    if known and all(numeric):
        return [-1 if r is None else int(r) for r in raw], sorted(set(known), key=int)
    if any(numeric):
        raise ConfigError("Labels mix class indices and class names "
                          f"(e.g. {next(r for r in known if _is_int(r))!r} and "
                          f"{next(r for r in known if not _is_int(r))!r}); set dataset.classes to fix the mapping.")
    class_names = sorted(set(known))
    pos = {c: i for i, c in enumerate(class_names)}
    return [-1 if r is None else pos[r] for r in raw], class_names


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def warn_unlabelled(names: Sequence[str], raw: Sequence[str | None], source: str) -> None:
    missing = [n for n, r in zip(names, raw, strict=True) if r is None]
    if missing:
        warnings.warn(f"{len(missing)} video(s) have no row in {source} and get label -1: "
                      f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}", stacklevel=3)


# ---------------------------------------------------------------------------------------------
# Datasets


class ClipDataset(Dataset):
    """Base: validated videos (names, labels, lengths) → sampled, resized (3, T, S, S) clips.

    Subclasses list candidate videos and call `admit`, then implement `load_frames`.
    """

    def __init__(self, frames: int = 16, size: int = 112, sampling: str = "uniform",
                 resize: str = "center_crop", crop_ratio: float = DEFAULT_CROP_RATIO,
                 allow_short: bool = False, skip_bad: bool = False) -> None:
        if sampling not in SAMPLINGS:
            raise unknown_choice("dataset.sampling", str(sampling), SAMPLINGS)
        if resize not in CLIP_RESIZE_MODES:
            raise unknown_choice("dataset.resize", str(resize), CLIP_RESIZE_MODES)
        if frames < 1 or size < 1:
            raise ConfigError(f"dataset.frames and the input size must be >= 1, got {frames} and {size}.")
        if not 0 < crop_ratio <= 1:
            raise ConfigError(f"dataset.crop_ratio must be in (0, 1], got {crop_ratio}.")
        self.frames, self.size, self.sampling = int(frames), int(size), sampling
        self.resize, self.crop_ratio = resize, float(crop_ratio)
        self.allow_short, self.skip_bad = bool(allow_short), bool(skip_bad)
        self.names: list[str] = []
        self.labels: list[int] = []
        self.lengths: list[int] = []
        self.raw_labels: list[str | None] = []
        self.class_names: list[str] = []
        self.skipped: list[str] = []  # names left out when the dataset was built (skip_bad)
        self.failed: dict[int, str] = {}  # clips that failed to load in this process (skip_bad): index → reason

    def admit(self, candidates: Iterable[tuple[str, str, int, str | None, Callable[[], int]]]) -> list[int]:
        """Probe each (name, source path, label, raw label, length probe); keep the good ones.

        A probe raising InputError, or a video shorter than T (without allow_short), raises — or,
        with skip_bad, is dropped with a warning naming it. Returns the kept positions.
        """
        kept = []
        for pos, (name, source, label, raw, probe) in enumerate(candidates):
            try:
                n = probe()
                if n < self.frames and not self.allow_short:
                    raise InputError(short_message(source, n, self.frames))
            except InputError as exc:
                if not self.skip_bad:
                    raise
                warnings.warn(f"vizlab: skipping {name}: {exc}", stacklevel=3)
                self.skipped.append(name)
                continue
            self.names.append(name)
            self.labels.append(label)
            self.raw_labels.append(raw)
            self.lengths.append(n)
            kept.append(pos)
        if not self.names:
            raise ConfigError(f"No usable videos left: all {len(self.skipped)} were skipped as bad.")
        return kept

    def __len__(self) -> int:
        return len(self.names)

    def clip_indices(self, index: int) -> np.ndarray:
        """(T,) frame indices of item `index`."""
        return sample_indices(self.lengths[index], self.frames, self.sampling, self.allow_short,
                              self.names[index])

    def load_frames(self, index: int, indices: np.ndarray) -> Sequence[np.ndarray]:  # pragma: no cover
        """The frames `indices` (repeats allowed) of video `index`, each (H, W, 3) uint8 RGB."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        """{"image": (3, T, S, S) float in [0, 1], "label": int, "name": str}.

        A clip that fails to load raises InputError naming the file; with skip_bad it is warned
        about (once per process) and comes back as {"name", "label", "skipped": reason}.
        """
        if index in self.failed:
            return self.placeholder(index)
        try:
            frames = self.load_frames(index, self.clip_indices(index))
        except InputError as exc:
            if not self.skip_bad:
                raise
            self.failed[index] = skip_reason(exc)
            warnings.warn(f"vizlab: skipping {self.names[index]}: {self.failed[index]}", stacklevel=2)
            return self.placeholder(index)
        clip = to_clip(resize_frames(frames, self.size, self.resize, self.crop_ratio))
        return {"image": clip, "label": self.labels[index], "name": self.names[index]}

    def placeholder(self, index: int) -> dict:
        """The item standing in for clip `index`, which failed to load: no "image", the reason under "skipped"."""
        return {"name": self.names[index], "label": self.labels[index], SKIPPED: self.failed[index]}


class VideoFolder(ClipDataset):
    """Video files decoded with decord; only the sampled frames are decoded (get_batch).

    `root_or_files`: a folder, searched recursively for `extensions` (root/<class>/<video>.mp4 or
    root/<video>.mp4; name = path relative to root without suffix), or one file / a list of files
    (name = file stem). labels: "folder" (default; the top-level class folder under root, or for
    files the parent folder name; videos directly in root get -1; all-integer folder names are the
    labels themselves), None (all -1) or a CSV path with rows `video,label` (label an int or a class
    name; `video` matches the name, file name or stem). `classes` fixes the class-name order.
    Defaults: T=16, 112², uniform sampling, shorter side → 128 then centre crop 112².
    """

    def __init__(self, root_or_files: str | Path | Sequence[str | Path], frames: int = 16, size: int = 112,
                 sampling: str = "uniform", resize: str = "center_crop", crop_ratio: float = DEFAULT_CROP_RATIO,
                 labels: str | Path | None = "folder", classes: Sequence[str] | None = None,
                 allow_short: bool = False, skip_bad: bool = False,
                 extensions: Sequence[str] = VIDEO_EXTENSIONS, num_threads: int = 0) -> None:
        super().__init__(frames, size, sampling, resize, crop_ratio, allow_short, skip_bad)
        self.num_threads = num_threads
        paths, names, folder_labels = list_videos(root_or_files, extensions)
        raw = raw_labels(names, folder_labels, labels, "folder")
        ints, self.class_names = resolve_labels(raw, names, classes)
        kept = self.admit((n, str(p), lab, r, lambda p=p: video_length(p))
                          for p, n, lab, r in zip(paths, names, ints, raw, strict=True))
        self.paths = [paths[i] for i in kept]

    def load_frames(self, index: int, indices: np.ndarray) -> np.ndarray:
        return read_video_frames(self.paths[index], indices, self.num_threads)


def list_videos(root_or_files: str | Path | Sequence[str | Path],
                extensions: Sequence[str]) -> tuple[list[Path], list[str], list[str | None]]:
    """Video paths, names and folder labels for VideoFolder (see its docstring)."""
    exts = tuple(e.lower() for e in extensions)
    if isinstance(root_or_files, str | Path) and Path(root_or_files).expanduser().is_dir():
        root = Path(root_or_files).expanduser()
        paths = sorted((p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file()),
                       key=lambda p: natural_key(p.relative_to(root).as_posix()))
        if not paths:
            raise ConfigError(f"No videos ({', '.join(exts)}) found under {root}. Expected "
                              "root/<class>/<video>.mp4 or root/<video>.mp4.")
        rel = [p.relative_to(root) for p in paths]
        return paths, [r.with_suffix("").as_posix() for r in rel], [r.parts[0] if len(r.parts) > 1 else None
                                                                     for r in rel]
    files = [root_or_files] if isinstance(root_or_files, str | Path) else list(root_or_files)
    if not files:
        raise ConfigError("dataset.root is empty: give a folder of videos or a list of video files.")
    paths = [Path(f).expanduser() for f in files]
    for p in paths:
        if not p.exists():
            raise ConfigError(f"Video path not found: {p}. Check dataset.root.")
    names = [p.stem for p in paths]
    if len(set(names)) < len(names):  # disambiguate equal stems with the parent folder
        names = [f"{p.parent.name}/{p.stem}" for p in paths]
    return paths, names, [p.parent.name or None for p in paths]


def raw_labels(names: Sequence[str], auto: Sequence[str | None], labels: str | Path | None,
               auto_name: str) -> list[str | None]:
    """Raw label per video: `auto` when labels == auto_name ("folder"/"prefix"), none, or from a CSV."""
    if labels is None or str(labels).lower() in ("none", "null"):
        return [None] * len(names)
    if str(labels) == auto_name:
        return list(auto)
    table = read_label_csv(labels)
    raw = [csv_lookup(table, n) for n in names]
    warn_unlabelled(names, raw, str(labels))
    return raw


class FrameFolder(ClipDataset):
    """Frame images, one folder per video: root/<video>/<frame>.jpg|png.

    Frames are ordered by the number in their name (natural sort; the video perturbation seed names
    them %09d.png from 1); the numbering must be consecutive — a gap or an empty folder raises
    InputError naming the folder. labels: "prefix" (default; the folder name before the first '-',
    e.g. "walking-003" → "walking", no '-' → -1), None, or a CSV path `video,label` (label an int or
    a class name); `classes` fixes the class-name order (default: sorted names; integer names are
    the labels). Validation only lists the files; frames are decoded when a clip is loaded.
    """

    def __init__(self, root: str | Path, frames: int = 16, size: int = 112, sampling: str = "uniform",
                 resize: str = "center_crop", crop_ratio: float = DEFAULT_CROP_RATIO,
                 labels: str | Path | None = "prefix", classes: Sequence[str] | None = None,
                 allow_short: bool = False, skip_bad: bool = False,
                 extensions: Sequence[str] = FRAME_EXTENSIONS) -> None:
        super().__init__(frames, size, sampling, resize, crop_ratio, allow_short, skip_bad)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise ConfigError(f"dataset.root is not a directory: {self.root}")
        self.extensions = tuple(e.lower() for e in extensions)
        folders = sorted((d for d in self.root.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name))
        if not folders:
            raise ConfigError(f"No video folders under {self.root}. Expected root/<video>/<frame>.jpg|png.")
        names = [d.name for d in folders]
        raw = raw_labels(names, [prefix_label(n) for n in names], labels, "prefix")
        ints, self.class_names = resolve_labels(raw, names, classes)
        listed: dict[int, list[Path]] = {}

        def probe(pos: int) -> int:
            listed[pos] = list_frames(folders[pos], self.extensions)
            return len(listed[pos])

        kept = self.admit((n, str(folders[i]), lab, r, lambda i=i: probe(i))
                          for i, (n, lab, r) in enumerate(zip(names, ints, raw, strict=True)))
        self.folders = [folders[i] for i in kept]
        self.frame_paths = [listed[i] for i in kept]

    def load_frames(self, index: int, indices: np.ndarray) -> list[np.ndarray]:
        paths = self.frame_paths[index]
        cache: dict[int, np.ndarray] = {}
        for i in np.unique(indices).tolist():
            cache[i] = read_frame_file(paths[i])
        return [cache[i] for i in indices.tolist()]


def prefix_label(name: str) -> str | None:
    """The class part of a video-folder name: the text before the first '-' (None without one)."""
    head, sep, _ = name.partition("-")
    return head if sep and head else None


def list_frames(folder: Path, extensions: Sequence[str] = FRAME_EXTENSIONS) -> list[Path]:
    """The frame files of one video folder, in frame-number order; InputError on a gap or no frames."""
    try:
        entries = [e for e in os.scandir(folder) if e.is_file() and Path(e.name).suffix.lower() in extensions]
    except OSError as exc:
        raise InputError(f"Could not list frame folder {folder}: {exc}") from exc
    if not entries:
        raise InputError(f"Frame folder {folder} is empty (no {', '.join(extensions)} files). "
                         "Remove it or set dataset.skip_bad=true.")
    numbered: list[tuple[int, Path]] = []
    for e in entries:
        digits = re.findall(r"\d+", Path(e.name).stem)
        if not digits:
            raise InputError(f"Frame {e.name} in {folder} has no frame number; name frames like 000000001.png.")
        numbered.append((int(digits[-1]), Path(e.path)))
    numbered.sort(key=lambda t: (t[0], natural_key(t[1].name)))
    numbers = [n for n, _ in numbered]
    first = numbers[0]
    for k, n in enumerate(numbers):
        if n != first + k:
            what = f"frame number {n} appears twice" if n < first + k else f"frame {first + k} is missing"
            raise InputError(f"Frame folder {folder} has a gap in its numbering: {what} "
                             f"(found {len(numbers)} frames numbered {first}..{numbers[-1]}). "
                             "Re-extract the frames or set dataset.skip_bad=true.")
    return [p for _, p in numbered]


# ---------------------------------------------------------------------------------------------
# Config → dataset

CLIP_DATASETS = ("video_folder", "frame_folder", "frame_sqlite")
_COMMON_KEYS = ("sampling", "resize", "crop_ratio", "allow_short", "skip_bad")


def build_clip_dataset(cfg: Mapping[str, Any], input_size: int, frames: int | None = None) -> ClipDataset:
    """`dataset=video_folder|frame_folder|frame_sqlite` → a clip dataset of (3, T, S, S) items.

    S = the model's `input_size`; T = cfg["frames"], or when that is null the model's `frames`
    (16 for the video zoo). Keys: root (video_folder, frame_folder) or path (frame_sqlite);
    sampling, resize, crop_ratio, allow_short, skip_bad; labels, classes (folders only); extensions.
    """
    name = cfg.get("name")
    if name not in CLIP_DATASETS:
        raise unknown_choice("clip dataset", str(name), CLIP_DATASETS)
    t = cfg.get("frames") or frames
    if not t:
        raise ConfigError(f"dataset={name} needs dataset.frames (the model does not define a clip length).")
    opts = {k: cfg[k] for k in _COMMON_KEYS if cfg.get(k) is not None}
    if name == "frame_sqlite":
        if not cfg.get("path"):
            raise ConfigError("dataset=frame_sqlite needs dataset.path=/path/to/store.sqlite "
                              "(build one with `vizlab pack-frames SRC... --out store.sqlite`).")
        from vizlab.data.frame_store import FrameStore

        return FrameStore(cfg["path"], int(t), input_size, **opts)
    root = cfg.get("root")
    if not root:
        layout = "root/<class>/<video>.mp4" if name == "video_folder" else "root/<video>/<frame>.jpg"
        raise ConfigError(f"dataset={name} needs dataset.root=/path/to/{layout}.")
    if not isinstance(root, str | Path):
        root = [str(r) for r in root]  # a list of video files (OmegaConf ListConfig)
    for key in ("labels", "classes", "extensions"):
        if key in cfg:
            value = cfg[key]
            opts[key] = list(value) if key != "labels" and value is not None else value
    if opts.get("extensions") is None:
        opts.pop("extensions", None)
    if name == "video_folder":
        if "num_threads" in cfg:
            opts["num_threads"] = int(cfg["num_threads"])
        return VideoFolder(root, int(t), input_size, **opts)
    if isinstance(root, list):
        raise ConfigError("dataset=frame_folder needs dataset.root to be one folder of <video>/<frame> folders.")
    return FrameFolder(root, int(t), input_size, **opts)


__all__ = ["CLIP_DATASETS", "SKIPPED", "build_clip_dataset", "check_batch", "CLIP_RESIZE_MODES", "ClipDataset", "DEFAULT_CROP_RATIO", "FRAME_EXTENSIONS", "FrameFolder",
           "SAMPLINGS", "VIDEO_EXTENSIONS", "VideoFolder", "decode_frame", "list_frames", "natural_key",
           "prefix_label", "read_label_csv", "resize_frames", "resolve_labels", "sample_indices", "to_clip",
           "video_length"]
