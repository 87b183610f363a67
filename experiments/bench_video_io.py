"""Clip loading throughput: video files (decord) vs JPEG frame folders vs one SQLite frame store.

    python experiments/bench_video_io.py [--videos 24] [--length 64] [--width 160] [--height 120]
                                         [--frames 16] [--size 112] [--sampling uniform] [--repeats 5]

The same synthetic content (moving shapes on a drifting gradient, mild noise) is written with
OpenCV as mp4v .mp4 files, as JPEG frame folders (quality 95) and as a SQLite store packed from
those folders (the JPEG bytes are copied). Each (source, loader) cell runs in a fresh subprocess so
that peak RSS (resource.getrusage ru_maxrss; workers: the largest child) belongs to it alone;
tracemalloc's peak (Python-side allocations, numpy included, torch tensors not; main process only)
is taken on one extra pass after timing. DataLoader cells use persistent workers and an untimed
warm-up pass, so they show steady-state throughput. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCES = ("video_folder", "frame_folder", "frame_sqlite")


def synthetic_frame(v: int, i: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame i of video v: gradient + a moving disc and square + noise."""
    import cv2

    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([(x * 255 // width + 3 * i) % 256, (y * 255 // height + 5 * v) % 256,
                    np.full_like(x, (40 * v + 2 * i) % 256)], -1).astype(np.uint8)
    cx, cy = int(width * (0.2 + 0.6 * i / 64)) % width, int(height * (0.5 + 0.3 * np.sin(i / 6 + v)))
    cv2.circle(img, (cx, cy), 14, (255, 255, 40), -1)
    cv2.rectangle(img, (width - cx - 10, 20), (width - cx + 10, 40), (30, 30, 220), -1)
    noise = rng.integers(-6, 7, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def make_data(root: Path, videos: int, length: int, width: int, height: int) -> dict[str, object]:
    """Write the videos, the frame folders and the store; returns paths, sizes and timings."""
    import cv2

    from vizlab.data.frame_store import pack_frame_store

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    for v in range(videos):
        cls = f"class{v % 4}"
        (root / "videos" / cls).mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(root / "videos" / cls / f"v{v:03d}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                 25, (width, height))
        folder = root / "frames" / f"{cls}-v{v:03d}"
        folder.mkdir(parents=True)
        for i in range(length):
            frame = synthetic_frame(v, i, width, height, rng)
            bgr = np.ascontiguousarray(frame[:, :, ::-1])
            writer.write(bgr)
            cv2.imwrite(str(folder / f"{i + 1:09d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        writer.release()
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = pack_frame_store(root / "frames", root / "store.sqlite", format="jpg", progress=False)
    t_pack = time.perf_counter() - t0
    return {"videos": str(root / "videos"), "frames": str(root / "frames"), "store": str(store),
            "bytes": {"video_folder": _du(root / "videos"), "frame_folder": _du(root / "frames"),
                      "frame_sqlite": store.stat().st_size},
            "files": {"video_folder": videos, "frame_folder": videos * length, "frame_sqlite": 1},
            "seconds_write": t_write, "seconds_pack": t_pack}


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(source: str, data: dict, frames: int, size: int, sampling: str):
    from vizlab.data.frame_store import FrameStore
    from vizlab.data.video import FrameFolder, VideoFolder

    if source == "video_folder":
        return VideoFolder(data["videos"], frames, size, sampling)
    if source == "frame_folder":
        return FrameFolder(data["frames"], frames, size, sampling)
    return FrameStore(data["store"], frames, size, sampling)


def one_pass(ds, loader) -> int:
    """Load every clip once (directly, or through `loader`); returns the number of clips."""
    if loader is None:
        for i in range(len(ds)):
            assert ds[i]["image"].shape[1] > 0
        return len(ds)
    return sum(batch["image"].shape[0] for batch in loader)


def measure(source: str, workers: int, args: argparse.Namespace, data: dict) -> dict:
    """One cell, in this (fresh) process."""
    import torch

    import vizlab.data.frame_store  # noqa: F401 - imports stay outside the timed construction

    scale = 1024 if sys.platform != "darwin" else 1
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    t0 = time.perf_counter()
    ds = build(source, data, args.frames, args.size, args.sampling)
    t_build = time.perf_counter() - t0
    loader = None
    if workers:  # persistent workers: steady-state throughput, worker start-up excluded
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, num_workers=workers,
                                             persistent_workers=True)
    one_pass(ds, loader)  # warm-up: decoder/connection set-up, worker start
    clips, t0 = 0, time.perf_counter()
    for _ in range(args.repeats):
        clips += one_pass(ds, loader)
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    one_pass(ds, loader)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del loader
    return {"clips_per_s": clips / seconds, "ms_per_clip": 1000 * seconds / clips, "build_ms": 1000 * t_build,
            "tracemalloc_peak_mib": peak / 2**20, "base_rss_mib": base_rss,
            "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20,
            "child_maxrss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--length", type=int, default=64, help="frames per video")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--frames", type=int, default=16, help="clip length T")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--sampling", default="uniform", choices=("uniform", "long_range", "dense"))
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the dataset")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: SOURCE:WORKERS:DATA_JSON
    args = parser.parse_args()
    if args.cell:
        source, workers, data_json = args.cell.split(":", 2)
        print(json.dumps(measure(source, int(workers), args, json.loads(data_json))))
        return
    with tempfile.TemporaryDirectory(prefix="bench_video_io_") as tmp:
        data = make_data(Path(tmp), args.videos, args.length, args.width, args.height)
        rows = []
        for source in SOURCES:
            for workers in (0, args.workers):
                argv = [*sys.argv[1:], "--cell", f"{source}:{workers}:{json.dumps(data)}"]
                out = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True,
                                     env={**os.environ, "PYTHONWARNINGS": "ignore"})
                if out.returncode:
                    sys.exit(f"cell {source}/{workers} failed:\n{out.stderr[-3000:]}")
                rows.append((source, workers, json.loads(out.stdout.strip().splitlines()[-1])))
    print(f"\n{args.videos} videos × {args.length} frames at {args.width}×{args.height} → clips of "
          f"T={args.frames} at {args.size}² ({args.sampling} sampling), {args.repeats} timed passes, "
          f"batch {args.batch_size}; {os.cpu_count()} CPUs. Wrote the content in {data['seconds_write']:.1f} s, "
          f"packed the store in {data['seconds_pack']:.2f} s.\n")
    print("| source | loader | clips/s | ms/clip | build ms | on disk MiB (files) | tracemalloc peak MiB | "
          "max RSS MiB: after imports → peak (worker) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for source, workers, r in rows:
        loader = "single process" if workers == 0 else f"DataLoader, {workers} workers"
        rss = f"{r['base_rss_mib']:.0f} → {r['maxrss_mib']:.0f}" + (
            f" ({r['child_maxrss_mib']:.0f})" if workers else "")
        print(f"| {source} | {loader} | {r['clips_per_s']:.1f} | {r['ms_per_clip']:.2f} | {r['build_ms']:.0f} | "
              f"{data['bytes'][source] / 2**20:.1f} ({data['files'][source]}) | {r['tracemalloc_peak_mib']:.2f} | "
              f"{rss} |")


if __name__ == "__main__":
    main()
