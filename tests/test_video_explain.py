"""task=explain end to end on the clip datasets, from the command line: an mp4 folder (decord) with
one partly corrupt video and skip_bad, logged to an offline W&B run; a SQLite frame store packed by
the `vizlab pack-frames` console script; and a clip that fails to load without skip_bad.

r3d_18 with random weights (model.pretrained=false) on 8-frame clips at its 112² input size.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PYTHON, run_cli
from PIL import Image, ImageSequence
from test_video_data import damage_mp4, write_frames, write_video

from vizlab.data.video import VideoFolder
from vizlab.loggers import read_offline_run
from vizlab.viz.overlay import clip_overlays

VIZLAB = str(Path(PYTHON).parent / "vizlab")  # the console script installed with the package
CLIP = ["model=r3d_18", "model.pretrained=false", "dataset.frames=8", "method=gradcam", "metric=none"]
FRAMES, SIZE = 8, 112  # r3d_18's input size; the clip length asked above
STRIP = (22 + SIZE, 8 * SIZE + 7 * 2, 3)  # caption bar + one row of 8 frames with 2-px gaps


def explain(job: Path, *overrides: str) -> dict:
    """Run `run.py` (task=explain) into `job`; return its results.json."""
    proc = run_cli(PYTHON, "run.py", *CLIP, *overrides, f"hydra.run.dir={job}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((job / "results.json").read_text()) | {"_stderr": proc.stderr}


def read_gif(path: Path) -> list[np.ndarray]:
    return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(Image.open(path))]


def check_clip_files(job: Path, sample: dict) -> None:
    """Strip PNG, GIF and MP4 of one clip exist with T = 8 frames of 112²."""
    strip, gif, mp4 = (job / f for f in sample["files"][:3])
    assert strip.name.endswith("_strip.png") and gif.suffix == ".gif" and mp4.suffix == ".mp4"
    assert cv2.imread(str(strip)).shape == STRIP
    frames = read_gif(gif)
    assert len(frames) == FRAMES and frames[0].shape == (SIZE, SIZE, 3)
    video = cv2.VideoCapture(str(mp4))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES and int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == SIZE
    video.release()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # whatever the calling shell says
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_video_folder_with_a_corrupt_video_explained_and_logged_to_wandb(tmp_path, offline_wandb):
    """Three OpenCV mp4s; jump/c has its later frames zeroed (it opens, its clip does not decode).
    With skip_bad and batch_size 1 its batch is empty: the loop warns, goes on and explains the other
    two. The GIF frames are the overlays of the saved saliency maps; W&B holds those GIFs as videos
    (byte for byte) and the strips as images."""
    root = tmp_path / "videos"
    write_video(root / "run" / "b.mp4", 14, side=64)
    write_video(root / "walk" / "a.mp4", 12, side=64)
    damage_mp4(write_video(root / "jump" / "c.mp4", 12, side=64))
    job = tmp_path / "job"
    results = explain(job, "dataset=video_folder", f"dataset.root={root}", "dataset.skip_bad=true",
                      "task.batch_size=1", "task.save_maps=true", "logger=wandb")
    assert "vizlab: skipping jump/c: Could not decode frames" in results["_stderr"]
    assert "c.mp4: the file is corrupt or truncated" in results["_stderr"]

    samples = results["samples"]  # classes jump, run, walk; jump/c (index 0) skipped
    assert [(s["index"], s["name"], s["label"]) for s in samples] == [(1, "run/b", 1), (2, "walk/a", 2)]
    assert results["summary"]["num_samples"] == 2 and results["model"]["name"] == "r3d_18"
    assert results["skipped"] == [{"index": 0, "name": "jump/c"}] and results["summary"]["num_skipped"] == 1
    assert sorted(p.name for p in (job / "heatmaps").iterdir()) == sorted(
        f"{stem}{ext}" for stem in ("00001_run_b", "00002_walk_a") for ext in (".gif", ".mp4", "_strip.png"))
    for sample in samples:
        check_clip_files(job, sample)

    # the GIF is the overlay of the saved saliency on the clip the model saw (within GIF quantisation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped clip's warning
        clip = VideoFolder(root, frames=FRAMES, size=SIZE, skip_bad=True)[1]["image"]  # (3, T, 112, 112)
    saliency = np.load(job / "maps" / "00001_run_b_saliency.npy")
    assert saliency.shape == (FRAMES, SIZE, SIZE) and saliency.max() == pytest.approx(1)
    gif = np.stack(read_gif(job / "heatmaps" / "00001_run_b.gif")).astype(int)
    want = np.stack(clip_overlays(clip, saliency)).astype(int)
    flipped = np.stack(clip_overlays(clip, saliency[::-1, ::-1, ::-1].copy())).astype(int)
    assert np.abs(gif - want).mean() < 2 < 10 < np.abs(gif - flipped).mean()
    frames = np.rint(clip.permute(1, 2, 3, 0).numpy() * 255).astype(int)  # (T, H, W, 3)
    change = np.abs(gif - frames).mean(-1)
    assert change[saliency > 0.7].mean() > 40 and change[saliency < 0.05].mean() < 8

    (run_dir,) = (job / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)
    summary = run["summary"]
    assert summary["heatmap_clips/_type"] == "videos" and summary["heatmap_clips/count"] == 2
    assert summary["heatmap_clips/captions"] == [f"{s['index']} {s['name']}: {s['target_name']}" for s in samples]
    videos = [f for f in run["files"] if f.startswith("media/videos/heatmap_clips")]
    assert len(videos) == 2 and all(f.endswith(".gif") for f in videos)
    assert {sha256(run_dir / "files" / f) for f in videos} == {sha256(job / s["files"][1]) for s in samples}
    assert summary["heatmaps/count"] == 2 and (summary["heatmaps/height"], summary["heatmaps/width"]) == STRIP[:2]
    assert len([f for f in run["files"] if f.startswith("media/images/heatmaps")]) == 2


def pack(frames: Path, store: Path) -> None:
    """`vizlab pack-frames FRAMES --out STORE --format png --quiet` through the console script."""
    proc = run_cli(VIZLAB, "pack-frames", str(frames), "--out", str(store), "--format", "png", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"vizlab: wrote {store} (3 videos, 30 frames, png" in proc.stdout


def test_frame_sqlite_store_packed_by_the_console_script(tmp_path):
    """Three 40×48 PNG frame folders → one store (vizlab pack-frames) → task=explain on it: one
    sample per video, labels from the name prefixes, a strip, GIF and MP4 each."""
    for seed, name in enumerate(("walk-1", "run-2", "walk-3")):
        write_frames(tmp_path / "frames" / name, 10, seed=seed)
    store = tmp_path / "clips.sqlite"
    pack(tmp_path / "frames", store)
    job = tmp_path / "job"
    results = explain(job, "dataset=frame_sqlite", f"dataset.path={store}", "logger=none")
    assert [(s["index"], s["name"], s["label"]) for s in results["samples"]] == [
        (0, "run-2", 0), (1, "walk-1", 1), (2, "walk-3", 1)]  # classes run, walk
    assert results["dataset"]["path"] == str(store) and results["dataset"]["frames"] == FRAMES
    for sample in results["samples"]:
        check_clip_files(job, sample)


@pytest.mark.slow
def test_a_clip_that_fails_to_load_without_skip_bad_stops_the_run_cleanly(tmp_path):
    """A blob cut in half inside the store: exit status 2, one line naming the store, video and frame
    and the fixes, and nothing left of the job."""
    for seed, name in enumerate(("walk-1", "run-2", "walk-3")):
        write_frames(tmp_path / "frames" / name, 10, seed=seed)
    store = tmp_path / "clips.sqlite"
    pack(tmp_path / "frames", store)
    conn = sqlite3.connect(store)
    conn.execute("UPDATE frames SET data = substr(data, 1, length(data) / 2) "
                 "WHERE idx = 9 AND video_id = (SELECT id FROM videos WHERE name = 'walk-3')")
    conn.commit()
    conn.close()
    job = tmp_path / "job"
    proc = run_cli(PYTHON, "run.py", *CLIP, "dataset=frame_sqlite", f"dataset.path={store}", "logger=none",
                   f"hydra.run.dir={job}", timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("vizlab: error:")]
    assert f"Frame store {store}: frame 9 of video walk-3 does not decode (corrupt png blob)" in line
    assert "Re-pack it with `vizlab pack-frames" in line and "dataset.skip_bad=true" in line
    assert "Traceback" not in proc.stderr and not job.exists()
    # every clip damaged: with skip_bad each is skipped, and a run with nothing left is an error
    conn = sqlite3.connect(store)
    conn.execute("UPDATE frames SET data = substr(data, 1, length(data) / 2) WHERE idx = 9")
    conn.commit()
    conn.close()
    proc = run_cli(PYTHON, "run.py", *CLIP, "dataset=frame_sqlite", f"dataset.path={store}", "dataset.skip_bad=true",
                   "logger=none", f"hydra.run.dir={job}", timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("vizlab: error:")]
    assert "All 3 samples failed to load and were skipped (run-2, walk-1, walk-3)" in line
    assert "Traceback" not in proc.stderr and not job.exists()
