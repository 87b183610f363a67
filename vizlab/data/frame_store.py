"""A SQLite frame store: many videos' frames as encoded JPEG/PNG blobs in ONE file.

    vizlab pack-frames SRC... --out store.sqlite [--format jpg|png] [--quality 95]

Schema: videos(id, name, label, num_frames, height, width); frames(video_id, idx, data) with
PRIMARY KEY (video_id, idx); meta(key, value) holds the format and the class names (JSON). The
frames table keeps its rowid on purpose: with ~8 KB blobs a WITHOUT ROWID table stores the blobs
inside its key b-tree (fan-out of a few rows per page), and fetching a 16-frame clip measured 4x
slower (0.42 vs 0.10 ms) with the same file size (experiments/bench_video_io.py content). `FrameStore` reads clips from it like `FrameFolder` reads folders: one read-only
connection per process (opened lazily, so DataLoader workers each get their own), one query per
clip for exactly the sampled frame indices.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from vizlab.data.video import (
    DEFAULT_CROP_RATIO,
    FRAME_EXTENSIONS,
    SKIP_HINT,
    VIDEO_EXTENSIONS,
    ClipDataset,
    FrameFolder,
    VideoFolder,
    check_batch,
    decode_frame,
    first_line,
    open_video,
    resolve_labels,
)
from vizlab.errors import ConfigError, InputError, VizlabError, unknown_choice
from vizlab.io import temp_file_next_to

FORMATS = ("jpg", "png")
SOURCE_KINDS = ("auto", "video", "frames")
SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE videos(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, label INTEGER NOT NULL,
                    num_frames INTEGER NOT NULL, height INTEGER NOT NULL, width INTEGER NOT NULL);
CREATE TABLE frames(video_id INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL,
                    PRIMARY KEY (video_id, idx));
"""
_SUFFIXES = {"jpg": (".jpg", ".jpeg"), "png": (".png",)}
REPACK_HINT = f"Re-pack it with `vizlab pack-frames SRC... --out store.sqlite`, {SKIP_HINT}"
PACK_SKIP_HINT = "or pack with --skip-bad (skip_bad=True) to leave the video out"

# ---------------------------------------------------------------------------------------------
# Packing


def encode_frame(rgb: np.ndarray, format: str = "jpg", quality: int = 95) -> bytes:
    """(H, W, 3) uint8 RGB → JPEG (quality 1-100, default 95) or PNG (lossless) bytes."""
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if format == "jpg" else []
    ok, buf = cv2.imencode(f".{format}", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), params)
    if not ok:  # pragma: no cover - cv2 always encodes uint8 RGB
        raise InputError(f"Could not encode a {rgb.shape} frame as {format}.")
    return buf.tobytes()


def open_source(src: str | Path, kind: str = "auto", labels: str | None = "auto", skip_bad: bool = False,
                classes: Sequence[str] | None = None) -> VideoFolder | FrameFolder:
    """A pack source as a dataset (T=1, nothing too short): a video file or folder, or a frame-folder root.

    kind="auto": a video file, or a folder holding any video file, is a video source; a folder of
    <video>/<frame> folders is a frame source. labels="auto" means the source's own rule (video:
    class folder; frames: name prefix before '-'), None for -1, or a CSV path.
    """
    if kind not in SOURCE_KINDS:
        raise unknown_choice("source kind", kind, SOURCE_KINDS)
    path = Path(src).expanduser()
    if not path.exists():
        raise ConfigError(f"Pack source not found: {path}")
    if kind == "auto":
        is_video = path.is_file() or any(p.suffix.lower() in VIDEO_EXTENSIONS for p in path.rglob("*"))
        kind = "video" if is_video else "frames"
    opts = {"frames": 1, "allow_short": True, "skip_bad": skip_bad, "classes": classes}
    if kind == "video":
        return VideoFolder(path, labels="folder" if labels == "auto" else labels, **opts)
    return FrameFolder(path, labels="prefix" if labels == "auto" else labels, **opts)


def video_frames(path: Path, num_frames: int, chunk: int = 32) -> Iterator[np.ndarray]:
    """Every frame of a video, decoded with decord in chunks of `chunk` → (H, W, 3) uint8 RGB each."""
    reader = open_video(path)
    try:
        for start in range(0, num_frames, chunk):
            wanted = list(range(start, min(num_frames, start + chunk)))
            try:
                batch = reader.get_batch(wanted).asnumpy()
            except Exception as exc:
                raise InputError(f"Could not decode frames {start}.. of video {path}: the file is corrupt "
                                 f"or truncated ({first_line(exc)}). Re-encode it (e.g. ffmpeg -i in.mp4 "
                                 f"out.mp4) or remove it, {SKIP_HINT}.") from exc
            yield from check_batch(batch, wanted, path)
    finally:
        del reader


def encoded_frames(ds: VideoFolder | FrameFolder, index: int, format: str,
                   quality: int) -> Iterator[tuple[bytes, tuple[int, int]]]:
    """(blob, (H, W)) per frame of video `index`. Frame files already in `format` are stored unchanged."""
    if isinstance(ds, VideoFolder):
        for rgb in video_frames(ds.paths[index], ds.lengths[index]):
            yield encode_frame(rgb, format, quality), rgb.shape[:2]
        return
    for path in ds.frame_paths[index]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"Could not read frame {path}: {exc}") from exc
        rgb = decode_frame(data, str(path))  # validates the frame and gives its size
        same = path.suffix.lower() in _SUFFIXES[format]
        yield (data if same else encode_frame(rgb, format, quality)), rgb.shape[:2]


def pack_frame_store(sources: str | Path | Sequence[str | Path], db_path: str | Path, format: str = "jpg",
                     quality: int = 95, kind: str = "auto", labels: str | None = "auto",
                     classes: Sequence[str] | None = None, skip_bad: bool = False,
                     progress: bool = True) -> Path:
    """Pack videos and/or frame folders into one SQLite file at `db_path`, atomically.

    sources: video files, folders of videos, or roots of <video>/<frame> folders (see `open_source`).
    Video frames are decoded with decord and encoded as `format` ("jpg" quality 95, or "png");
    frame files already in that format are stored byte for byte. Labels are unified across sources
    (`classes` fixes the order). The store is built in a temporary file next to `db_path` and
    renamed over it only when complete. Bad videos raise InputError, or with skip_bad are skipped
    with a warning. Returns `db_path`.
    """
    from vizlab.progress import progress_bar

    if format not in FORMATS:
        raise unknown_choice("frame format", str(format), FORMATS)
    if not 1 <= int(quality) <= 100:
        raise ConfigError(f"JPEG quality must be in 1..100, got {quality}.")
    srcs = [sources] if isinstance(sources, str | Path) else list(sources)
    if not srcs:
        raise ConfigError("Nothing to pack: give at least one video folder, video file or frame-folder root.")
    datasets = [open_source(s, kind, labels, skip_bad, classes) for s in srcs]
    items = [(ds, i) for ds in datasets for i in range(len(ds))]
    names = [ds.names[i] for ds, i in items]
    dup = sorted(n for n, k in Counter(names).items() if k > 1)
    if dup:
        raise ConfigError(f"Video names must be unique across sources; repeated: {', '.join(dup[:5])}.")
    ints, class_names = resolve_labels([ds.raw_labels[i] for ds, i in items], names, classes)

    db_path = Path(db_path).expanduser()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_next_to(db_path)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)  # explicit transactions below
        try:
            conn.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("format", format), ("classes", json.dumps(class_names)), ("schema", "1")])
            packed = 0
            bar = progress_bar(items, unit="video", desc=f"pack {db_path.name}", disable=not progress)
            for (ds, i), label in zip(bar, ints, strict=True):
                packed += _pack_one(conn, ds, i, label, format, quality, skip_bad)
                bar.set_postfix(frames=packed)
            bar.close()
            count = conn.execute("SELECT COUNT(*) FROM videos").fetchone()[0]
            if count == 0:
                raise ConfigError("Nothing was packed: every video was skipped as bad.")
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.replace(tmp, db_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return db_path


def _pack_one(conn: sqlite3.Connection, ds: VideoFolder | FrameFolder, index: int, label: int,
              format: str, quality: int, skip_bad: bool) -> int:
    """Insert one video in its own savepoint; returns its frame count (0 if skipped)."""
    name = ds.names[index]
    conn.execute("SAVEPOINT video")
    try:
        cur = conn.execute("INSERT INTO videos(name, label, num_frames, height, width) VALUES (?, ?, 0, 0, 0)",
                           (name, label))
        vid, n, size = cur.lastrowid, 0, (0, 0)
        for n, (blob, shape) in enumerate(encoded_frames(ds, index, format, quality), 1):
            size = size if n > 1 else shape
            conn.execute("INSERT INTO frames VALUES (?, ?, ?)", (vid, n - 1, blob))
        if n != ds.lengths[index]:
            raise InputError(f"Video {name}: expected {ds.lengths[index]} frames, decoded {n}.")
        conn.execute("UPDATE videos SET num_frames=?, height=?, width=? WHERE id=?", (n, *size, vid))
        conn.execute("RELEASE video")
        return n
    except InputError as exc:
        conn.execute("ROLLBACK TO video")
        conn.execute("RELEASE video")
        if not skip_bad:
            raise InputError(str(exc).replace(SKIP_HINT, PACK_SKIP_HINT)) from exc
        warnings.warn(f"vizlab: skipping {name}: {exc}", stacklevel=3)
        return 0


# ---------------------------------------------------------------------------------------------
# Reading


class FrameStore(ClipDataset):
    """Clips from a store written by `pack_frame_store` (defaults: T=16, 112², uniform sampling).

    Labels and class names are those stored at pack time. Resizing, sampling and the too-short
    rule are FrameFolder's, so a store packed from a frame folder in the same format yields the
    very same tensors. The connection is read-only (`file:...?mode=ro`) and opened lazily once per
    process; `close()` drops it.
    """

    def __init__(self, db_path: str | Path, frames: int = 16, size: int = 112, sampling: str = "uniform",
                 resize: str = "center_crop", crop_ratio: float = DEFAULT_CROP_RATIO,
                 allow_short: bool = False, skip_bad: bool = False) -> None:
        super().__init__(frames, size, sampling, resize, crop_ratio, allow_short, skip_bad)
        self.db_path = Path(db_path).expanduser().resolve()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        rows, meta = self._read_index()
        self.class_names = json.loads(meta.get("classes", "[]"))
        self.format = meta.get("format", "")
        kept = self.admit((name, f"{self.db_path}: video {name}", label, None,
                           lambda n=n, name=name: _check_count(self.db_path, name, n))
                          for _, name, label, n in rows)
        self.video_ids = [rows[i][0] for i in kept]

    def _read_index(self) -> tuple[list[tuple[int, str, int, int]], dict[str, str]]:
        if not self.db_path.is_file():
            raise ConfigError(f"Frame store not found: {self.db_path}. Build one with "
                              "`vizlab pack-frames SRC... --out store.sqlite`.")
        try:
            conn = self._connect()
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if not {"videos", "frames"} <= tables:
                    raise ConfigError(f"{self.db_path} is an SQLite file but not a vizlab frame store "
                                      "(no videos/frames tables). Build one with `vizlab pack-frames`.")
                rows = conn.execute("SELECT id, name, label, num_frames FROM videos ORDER BY id").fetchall()
                meta = dict(conn.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"Could not read frame store {self.db_path}: {exc}. Is it a file written "
                              "by `vizlab pack-frames`?") from exc
        if not rows:
            raise ConfigError(f"Frame store {self.db_path} holds no videos.")
        return rows, meta

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"{self.db_path.as_uri()}?mode=ro", uri=True, check_same_thread=False)

    def connection(self) -> sqlite3.Connection:
        """This process's read-only connection (a forked DataLoader worker opens its own)."""
        if self._conn is None or self._pid != os.getpid():
            self._conn, self._pid = self._connect(), os.getpid()
        return self._conn

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = self._pid = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_conn": None, "_pid": None}

    def frame_blobs(self, index: int, indices: Sequence[int]) -> dict[int, bytes]:
        """{idx: encoded bytes} for the frames `indices` of video `index`, in one query.

        InputError naming the store and the video if frames are missing or the file is damaged.
        """
        wanted = sorted(set(int(i) for i in indices))
        marks = ",".join("?" * len(wanted))
        try:
            rows = self.connection().execute(
                f"SELECT idx, data FROM frames WHERE video_id = ? AND idx IN ({marks})",
                (self.video_ids[index], *wanted)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"Frame store {self.db_path}: could not read the frames of video {self.names[index]} "
                             f"({exc}); the file is damaged. {REPACK_HINT}.") from exc
        blobs = dict(rows)
        missing = [i for i in wanted if i not in blobs]
        if missing:
            raise InputError(f"Frame store {self.db_path}: video {self.names[index]} lacks frames {missing[:10]}; "
                             f"the store is damaged. {REPACK_HINT}.")
        return blobs

    def load_frames(self, index: int, indices: np.ndarray) -> list[np.ndarray]:
        """The frames `indices` of video `index`, each (H, W, 3) uint8 RGB; InputError naming the
        store, the video and the frame if a blob does not decode."""
        blobs = self.frame_blobs(index, indices.tolist())
        name = self.names[index]
        decoded = {}
        for i, blob in blobs.items():
            try:
                decoded[i] = decode_frame(blob, f"{self.db_path}:{name}/{i}")
            except InputError:
                raise InputError(f"Frame store {self.db_path}: frame {i} of video {name} does not decode "
                                 f"(corrupt {self.format or 'image'} blob). {REPACK_HINT}.") from None
        return [decoded[i] for i in indices.tolist()]


def _check_count(db_path: Path, name: str, num_frames: int) -> int:
    if num_frames < 1:
        raise InputError(f"Frame store {db_path}: video {name} has no frames. Re-pack it or set "
                         "dataset.skip_bad=true.")
    return num_frames


# ---------------------------------------------------------------------------------------------
# Command line


def pack_main(argv: Sequence[str] | None = None) -> int:
    """`vizlab pack-frames SRC... --out store.sqlite [--format jpg|png] [--quality 95] ...`."""
    parser = argparse.ArgumentParser(
        prog="vizlab pack-frames",
        description="Pack videos (decoded with decord) or frame folders (root/<video>/<frame>.jpg|png) "
                    "into one SQLite frame store for dataset=frame_sqlite.")
    parser.add_argument("sources", nargs="+", help="video files, folders of videos, or frame-folder roots")
    parser.add_argument("--out", required=True, help="the .sqlite file to write (replaced atomically)")
    parser.add_argument("--format", choices=FORMATS, default="jpg", help="frame encoding (default jpg)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality 1-100 (default 95)")
    parser.add_argument("--kind", choices=SOURCE_KINDS, default="auto", help="source type (default auto)")
    parser.add_argument("--labels", default="auto",
                        help="auto (class folder / name prefix), none, or a CSV with rows video,label")
    parser.add_argument("--classes", default=None, help="comma-separated class names fixing the label order")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable videos with a warning")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    labels = None if args.labels.lower() == "none" else args.labels
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    try:
        out = pack_frame_store(args.sources, args.out, args.format, args.quality, args.kind, labels, classes,
                               args.skip_bad, progress=not args.quiet)
    except VizlabError as exc:
        print(f"vizlab: error: {exc}", file=sys.stderr)
        return 2
    conn = sqlite3.connect(f"{out.resolve().as_uri()}?mode=ro", uri=True)
    videos, frames = conn.execute("SELECT COUNT(*), COALESCE(SUM(num_frames), 0) FROM videos").fetchone()
    conn.close()
    print(f"vizlab: wrote {out} ({videos} videos, {frames} frames, {args.format}, "
          f"{out.stat().st_size / 2**20:.1f} MiB)")
    return 0


__all__ = ["FORMATS", "FRAME_EXTENSIONS", "FrameStore", "encode_frame", "open_source", "pack_frame_store",
           "pack_main"]
