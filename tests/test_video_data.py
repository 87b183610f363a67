"""Clip sources: decord video folders, frame folders, the SQLite frame store, sampling and bad input."""

from __future__ import annotations

import pickle
import sqlite3
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from vizlab.data.frame_store import FrameStore, pack_frame_store, pack_main
from vizlab.data.video import (
    SKIPPED,
    FrameFolder,
    VideoFolder,
    build_clip_dataset,
    check_batch,
    natural_key,
    resize_frames,
    sample_indices,
)
from vizlab.errors import ConfigError, InputError
from vizlab.lit.explain_data import ExplainDataModule
from vizlab.tasks.explain import skipped_samples

ROOT = Path(__file__).resolve().parents[1]
SIDE = 128  # written frame side; with crop_ratio 0.875, size 112 is a pure centre crop (no resampling)


def pattern_frame(i: int, side: int = SIDE) -> np.ndarray:
    """(side, side, 3) RGB: background (20 + 6i, 80, 140 - 6i), a white 16² square at x = 12 + 4i."""
    img = np.empty((side, side, 3), np.uint8)
    img[:] = (20 + 6 * i, 80, 140 - 6 * i)
    y, x = square_corner(i)
    img[y:y + 16, x:x + 16] = 255
    return img


def square_corner(i: int) -> tuple[int, int]:
    return 24 + 8 * (i % 4), 12 + 4 * i


def write_video(path: Path, n: int, side: int = SIDE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (side, side))
    assert writer.isOpened()
    for i in range(n):
        writer.write(pattern_frame(i, side)[:, :, ::-1].copy())
    writer.release()
    return path


def mp4_boxes(data: bytes) -> dict[bytes, tuple[int, int]]:
    """Top-level boxes of an mp4: {type: (offset, size)} (OpenCV writes ftyp, free, mdat, then moov)."""
    boxes, pos = {}, 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        boxes[data[pos + 4:pos + 8]] = (pos, size)
        pos += max(size, 8)
    return boxes


def damage_mp4(path: Path, keep: float = 0.5) -> Path:
    """Zero the coded frames of an mp4 from `keep` of its mdat box on. The container index (moov)
    stays intact, so the file opens and reports every frame, but the later frames do not decode."""
    data = bytearray(path.read_bytes())
    start, size = mp4_boxes(bytes(data))[b"mdat"]
    cut = start + 8 + int((size - 8) * keep)
    data[cut:start + size] = bytes(start + size - cut)
    path.write_bytes(bytes(data))
    return path


def truncate_file(path: Path, keep: float = 0.6) -> Path:
    """Keep the first `keep` of the bytes (an interrupted copy: OpenCV's mp4 index, written last, is lost)."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def write_frames(folder: Path, n: int, ext: str = "png", side: int = 40, seed: int = 0,
                 name: str = "{:09d}", start: int = 1) -> list[np.ndarray]:
    """Random RGB frames named like the video perturbation seed (%09d, 1-based)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (side, side + 8, 3), dtype=np.uint8) for _ in range(n)]
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{name.format(i + start)}.{ext}"), f[:, :, ::-1].copy())
    return frames


@pytest.fixture(scope="module")
def video_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "walk" / "a.mp4", 20)
    write_video(root / "run" / "b.mp4", 24)
    return root


# ----------------------------------------------------------------------------- sampling


def test_sample_indices_rules():
    assert sample_indices(20, 8, "uniform").tolist() == [0, 3, 5, 8, 11, 14, 16, 19]
    assert sample_indices(16, 16, "uniform").tolist() == list(range(16))
    # long_range: r = floor(50/16) = 3 → 0, 3, ..., 48 (17 indices), keep the last 16
    assert sample_indices(50, 16, "long_range").tolist() == list(range(3, 49, 3))
    assert sample_indices(33, 16, "long_range").tolist() == list(range(2, 33, 2))
    assert sample_indices(16, 16, "long_range").tolist() == list(range(16))
    assert sample_indices(20, 8, "dense").tolist() == list(range(6, 14))
    assert sample_indices(21, 8, "dense").tolist() == list(range(6, 14))
    for sampling in ("uniform", "long_range", "dense"):
        with pytest.raises(InputError, match=r"clip\.mp4 has 5 frame\(s\) but a clip needs 8"):
            sample_indices(5, 8, sampling, name="clip.mp4")
        assert sample_indices(5, 8, sampling, allow_short=True).tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    with pytest.raises(ConfigError, match="Unknown dataset.sampling 'random'"):
        sample_indices(20, 8, "random")


def test_natural_sort_and_resize():
    names = ["frame_10.png", "frame_2.png", "frame_1.png"]
    assert sorted(names, key=natural_key) == ["frame_1.png", "frame_2.png", "frame_10.png"]
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:, 80:] = 200
    out = resize_frames([frame], 112)  # shorter side 120 → 128, width 171, centre crop 112
    assert out.shape == (1, 112, 112, 3) and out[0, :, 0].max() == 0 and out[0, :, -1].min() == 200
    assert resize_frames([frame], 32, "squash").shape == (1, 32, 32, 3)
    same = resize_frames([frame[:112, :112]], 112, crop_ratio=1.0)
    assert np.array_equal(same[0], frame[:112, :112])


# ----------------------------------------------------------------------------- video files


def check_clip_matches(clip: torch.Tensor, indices: list[int]) -> None:
    """clip (3, T, 112, 112) vs the centre crop of the written pattern frames `indices`."""
    assert clip.shape == (3, len(indices), 112, 112) and clip.dtype == torch.float32
    assert 0 <= clip.min() and clip.max() <= 1
    off = (SIDE - 112) // 2
    for t, i in enumerate(indices):
        want = torch.from_numpy(pattern_frame(i)[off:off + 112, off:off + 112]).permute(2, 0, 1).float() / 255
        got = clip[:, t]
        assert (got - want).abs().mean() < 8 / 255, f"frame {t} (video frame {i}) differs"
        ys, xs = np.nonzero(got.min(0).values.numpy() > 0.9)  # the white square
        y, x = square_corner(i)
        assert abs(ys.mean() - (y - off + 7.5)) < 1.5 and abs(xs.mean() - (x - off + 7.5)) < 1.5


def test_video_folder_decodes_the_written_frames(video_root):
    ds = VideoFolder(video_root, frames=8, size=112)
    assert ds.names == ["run/b", "walk/a"] and ds.lengths == [24, 20]
    assert ds.class_names == ["run", "walk"] and ds.labels == [0, 1]
    item = ds[1]
    assert item["name"] == "walk/a" and item["label"] == 1
    check_clip_matches(item["image"], [0, 3, 5, 8, 11, 14, 16, 19])
    dense = VideoFolder(video_root / "walk" / "a.mp4", frames=6, sampling="dense", labels=None)
    assert dense.labels == [-1] and dense.names == ["a"]
    check_clip_matches(dense[0]["image"], list(range(7, 13)))
    long = VideoFolder([video_root / "run" / "b.mp4"], frames=7, sampling="long_range")
    assert long.labels == [0] and long.class_names == ["run"]  # file list: parent folder name
    check_clip_matches(long[0]["image"], list(range(3, 24, 3)))  # r = 3: 0..21, keep the last 7


def test_corrupt_video(tmp_path, video_root):
    bad = tmp_path / "cls" / "x.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00garbage" * 500)
    with pytest.raises(InputError, match=r"Could not open video .*x\.mp4.*corrupt"):
        VideoFolder(tmp_path, frames=4)
    (tmp_path / "cls" / "ok.mp4").write_bytes((video_root / "walk" / "a.mp4").read_bytes())
    with pytest.warns(UserWarning, match=r"skipping cls/x: .*x\.mp4"):
        ds = VideoFolder(tmp_path, frames=4, skip_bad=True)
    assert ds.names == ["cls/ok"] and ds.skipped == ["cls/x"] and ds[0]["image"].shape == (3, 4, 112, 112)


def test_truncated_video_is_rejected_when_the_dataset_is_built(tmp_path):
    write_video(tmp_path / "cls" / "ok.mp4", 12)
    truncate_file(write_video(tmp_path / "cls" / "cut.mp4", 12))
    with pytest.raises(InputError, match=r"Could not open video .*cut\.mp4: the file is corrupt, truncated .*"
                                         r"Re-encode it .*skip_bad=true"):
        VideoFolder(tmp_path, frames=4)
    with pytest.warns(UserWarning, match=r"skipping cls/cut: Could not open video .*cut\.mp4"):
        ds = VideoFolder(tmp_path, frames=4, skip_bad=True)
    assert ds.names == ["cls/ok"] and ds.skipped == ["cls/cut"]


def test_partly_corrupt_video_fails_or_is_skipped_when_its_clip_is_loaded(tmp_path):
    """A real OpenCV mp4 with its later coded frames zeroed: it opens (20 frames in the index), so it
    passes validation; decoding its clip fails. skip_bad=false: one error naming the file and the fix;
    skip_bad=true: a warning naming it, a placeholder item, and the explain batches leave it out."""
    write_video(tmp_path / "run" / "b.mp4", 20)
    damage_mp4(write_video(tmp_path / "walk" / "a.mp4", 20))
    strict = VideoFolder(tmp_path, frames=8)
    assert strict.names == ["run/b", "walk/a"] and strict.lengths == [20, 20]
    check_clip_matches(strict[0]["image"], [0, 3, 5, 8, 11, 14, 16, 19])
    with pytest.raises(InputError, match=r"Could not decode frames \[0, 3, 5, 8, 11, 14, 16, 19\] of video "
                                         r".*walk/a\.mp4: the file is corrupt or truncated \(.+\)\. Re-encode it "
                                         r".*or set dataset\.skip_bad=true to skip the clip"):
        strict[1]

    lenient = VideoFolder(tmp_path, frames=8, skip_bad=True)
    with pytest.warns(UserWarning, match=r"vizlab: skipping walk/a: Could not decode frames .*walk/a\.mp4"):
        item = lenient[1]
    assert set(item) == {"name", "label", SKIPPED} and item["name"] == "walk/a" and item["label"] == 1
    assert "walk/a.mp4" in item[SKIPPED]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process; the failure is remembered
        assert lenient[1] == item
        assert torch.equal(lenient[0]["image"], strict[0]["image"])
        data = ExplainDataModule(lenient, batch_size=1)
        loader = data.test_dataloader()
        batches = list(loader)  # the all-skipped second batch is left out
    assert len(loader) == 2 and len(batches) == 1
    records = [{"index": int(i)} for b in batches for i in b["index"]]
    assert skipped_samples(lenient, records) == [{"index": 1, "name": "walk/a"}]
    assert batches[0]["name"] == ["run/b"] and batches[0]["index"].tolist() == [0]
    assert batches[0]["image"].shape == (1, 3, 8, 112, 112) and "skipped" not in batches[0]
    (mixed,) = list(ExplainDataModule(lenient, batch_size=2).test_dataloader())
    assert mixed["name"] == ["run/b"] and mixed["skipped"] == ["walk/a"] and mixed["label"].tolist() == [0]
    fresh = ExplainDataModule(VideoFolder(tmp_path, frames=8, skip_bad=True), batch_size=1, num_workers=1)
    (batch,) = list(fresh.test_dataloader())  # the clip fails inside the worker process this time
    assert batch["name"] == ["run/b"] and batch["index"].tolist() == [0]
    assert skipped_samples(fresh.dataset.dataset, [{"index": 0}]) == [{"index": 1, "name": "walk/a"}]


def test_check_batch_rejects_short_or_non_rgb_batches():
    good = np.zeros((3, 8, 8, 3), np.uint8)
    assert check_batch(good, [0, 4, 9], "v.mp4") is good
    with pytest.raises(InputError, match=r"decord returned frames of shape \(2, 8, 8, 3\) \(uint8\) for the 3 "
                                         r"frame\(s\) \[0, 4, 9\] asked of video v\.mp4; expected \(3, H, W, 3\).*"
                                         r"skip_bad=true"):
        check_batch(good[:2], [0, 4, 9], "v.mp4")
    with pytest.raises(InputError, match=r"shape \(3, 8, 8, 4\)"):
        check_batch(np.zeros((3, 8, 8, 4), np.uint8), [0, 4, 9], "v.mp4")


def test_too_short_video(video_root):
    with pytest.raises(InputError, match=r"walk/a\.mp4 has 20 frame\(s\) but a clip needs 22.*allow_short"):
        VideoFolder(video_root, frames=22)
    with pytest.warns(UserWarning, match=r"skipping walk/a: .*20 frame"):
        ds = VideoFolder(video_root, frames=22, skip_bad=True)
    assert ds.names == ["run/b"] and ds.labels == [0]  # class mapping unchanged by skipping
    padded = VideoFolder(video_root / "walk" / "a.mp4", frames=22, sampling="dense", allow_short=True)
    clip = padded[0]["image"]
    check_clip_matches(clip, [*range(20), 19, 19])
    assert torch.equal(clip[:, 19], clip[:, 21])


def test_video_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="No videos"):
        VideoFolder(tmp_path, frames=4)
    with pytest.raises(ConfigError, match="not found"):
        VideoFolder([tmp_path / "nope.mp4"], frames=4)


# ----------------------------------------------------------------------------- frame folders


def test_frame_folder_order_labels_and_clip(tmp_path):
    frames = write_frames(tmp_path / "walking-001", 12, "png", name="frame_{}", start=1)
    write_frames(tmp_path / "jumping-002", 9, "jpg", seed=1)
    write_frames(tmp_path / "nolabel", 9, "png", seed=2)
    ds = FrameFolder(tmp_path, frames=4, size=40, sampling="dense", crop_ratio=1.0)
    assert ds.names == ["jumping-002", "nolabel", "walking-001"] and ds.lengths == [9, 9, 12]
    assert ds.class_names == ["jumping", "walking"] and ds.labels == [0, -1, 1]
    assert [p.name for p in ds.frame_paths[2][:3]] == ["frame_1.png", "frame_2.png", "frame_3.png"]
    clip = ds[2]["image"]  # dense: frames 4..7 (0-based) = frame_5 .. frame_8
    want = torch.from_numpy(np.stack(frames[4:8])[:, :, 4:44]).permute(3, 0, 1, 2).float() / 255
    assert torch.equal(clip, want)  # PNG, centre crop of 40 x 48 → 40², no resampling: exact
    fixed = FrameFolder(tmp_path, frames=4, classes=["walking", "jumping", "other"])
    assert fixed.labels == [1, -1, 0] and fixed.class_names == ["walking", "jumping", "other"]
    with pytest.raises(InputError, match="jumping-002 has label 'jumping', which is not in dataset.classes"):
        FrameFolder(tmp_path, frames=4, classes=["walking"])


def test_frame_folder_labels_from_csv(tmp_path):
    for name in ("a", "b", "c"):
        write_frames(tmp_path / "v" / name, 4)
    (tmp_path / "names.csv").write_text("video,label\na,dog\nb,cat\n")
    with pytest.warns(UserWarning, match=r"1 video\(s\) have no row in .*names\.csv.*: c"):
        ds = FrameFolder(tmp_path / "v", frames=4, labels=tmp_path / "names.csv")
    assert ds.labels == [1, 0, -1] and ds.class_names == ["cat", "dog"]
    (tmp_path / "ints.csv").write_text("a,5\nb,7\nc,0\n")
    assert FrameFolder(tmp_path / "v", frames=4, labels=tmp_path / "ints.csv").labels == [5, 7, 0]
    (tmp_path / "mixed.csv").write_text("a,5\nb,cat\nc,0\n")
    with pytest.raises(ConfigError, match="mix class indices and class names"):
        FrameFolder(tmp_path / "v", frames=4, labels=tmp_path / "mixed.csv")
    ok = FrameFolder(tmp_path / "v", frames=4, labels=tmp_path / "mixed.csv", classes=["dog", "cat"])
    assert ok.labels == [5, 1, 0]
    (tmp_path / "bad.csv").write_text("a\n")
    with pytest.raises(ConfigError, match=r"bad\.csv, line 1: expected `video,label`"):
        FrameFolder(tmp_path / "v", frames=4, labels=tmp_path / "bad.csv")
    with pytest.raises(ConfigError, match="Label CSV not found"):
        FrameFolder(tmp_path / "v", frames=4, labels=tmp_path / "missing.csv")


def test_video_folder_labels_from_csv(video_root, tmp_path):
    (tmp_path / "labels.csv").write_text("b,3\nwalk/a,1\n")  # matched by stem or by name
    ds = VideoFolder(video_root, frames=4, labels=tmp_path / "labels.csv")
    assert ds.labels == [3, 1]


def test_frame_folder_missing_and_empty(tmp_path):
    write_frames(tmp_path / "good-1", 8)
    write_frames(tmp_path / "gap-2", 8)
    (tmp_path / "gap-2" / "000000005.png").unlink()
    with pytest.raises(InputError, match=r"Frame folder .*gap-2 has a gap .*frame 5 is missing"):
        FrameFolder(tmp_path, frames=4)
    (tmp_path / "gap-2" / "000000005.png").write_bytes(b"")  # restore numbering, then empty a folder
    (tmp_path / "empty-3").mkdir()
    with pytest.raises(InputError, match=r"Frame folder .*empty-3 is empty"):
        FrameFolder(tmp_path, frames=4)
    with pytest.warns(UserWarning, match="skipping empty-3"):
        ds = FrameFolder(tmp_path, frames=4, sampling="dense", skip_bad=True)
    assert ds.names == ["gap-2", "good-1"] and ds.skipped == ["empty-3"]
    # the zero-byte frame passes validation (listing only); loading gap-2's clip skips it, naming the file
    with pytest.warns(UserWarning, match=r"skipping gap-2: Could not decode frame .*gap-2.*000000005\.png"):
        assert SKIPPED in ds[0] and "image" not in ds[0]
    assert ds[1]["image"].shape == (3, 4, 112, 112) and ds.failed.keys() == {0}
    (tmp_path / "empty-3").rmdir()
    strict = FrameFolder(tmp_path, frames=4, sampling="dense")
    with pytest.raises(InputError, match=r"Could not decode frame .*gap-2.*000000005\.png: the file is corrupt "
                                         r"or not an image\. Re-extract or remove it, or set dataset\.skip_bad=true"):
        strict[0]  # without skip_bad: one error naming the frame file when the clip is loaded
    with pytest.raises(InputError, match=r"gap-2 has 8 frame\(s\) but a clip needs 9"):
        FrameFolder(tmp_path, frames=9)
    with pytest.raises(ConfigError, match="not a directory"):
        FrameFolder(tmp_path / "missing", frames=4)


# ----------------------------------------------------------------------------- SQLite store


def test_corrupt_png_in_a_frame_folder(tmp_path):
    """A real PNG cut in half inside one video's folder: an error naming the frame file, or with
    skip_bad a warning and a placeholder for that clip only."""
    write_frames(tmp_path / "a-1", 8)
    write_frames(tmp_path / "b-1", 8, seed=1)
    truncate_file(tmp_path / "b-1" / "000000003.png", 0.5)
    strict = FrameFolder(tmp_path, frames=8, size=32)
    assert strict.lengths == [8, 8] and strict[0]["image"].shape == (3, 8, 32, 32)
    with pytest.raises(InputError, match=r"Could not decode frame .*b-1/000000003\.png: the file is corrupt"):
        strict[1]
    lenient = FrameFolder(tmp_path, frames=8, size=32, skip_bad=True)
    with pytest.warns(UserWarning, match=r"skipping b-1: Could not decode frame .*b-1/000000003\.png"):
        assert lenient[1] == {"name": "b-1", "label": 1, SKIPPED: lenient.failed[1]}
    assert torch.equal(lenient[0]["image"], strict[0]["image"])


def test_png_frame_store_round_trip_is_exact(tmp_path):
    src = tmp_path / "frames"
    originals = {name: write_frames(src / name, n, "png", seed=s)
                 for s, (name, n) in enumerate([("walk-1", 10), ("run-1", 7), ("walk-2", 16)])}
    db = pack_frame_store(src, tmp_path / "store.sqlite", format="png", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "store.sqlite"]  # no temp file left
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, name, label, num_frames, height, width FROM videos ORDER BY id").fetchall()
    assert [r[1:] for r in rows] == [("run-1", 0, 7, 40, 48), ("walk-1", 1, 10, 40, 48), ("walk-2", 1, 16, 40, 48)]
    for vid, name, *_ in rows:  # blobs are the original PNG files, byte for byte
        for idx, data in conn.execute("SELECT idx, data FROM frames WHERE video_id=? ORDER BY idx", (vid,)):
            assert data == (src / name / f"{idx + 1:09d}.png").read_bytes()
    conn.close()
    folder = FrameFolder(src, frames=6, size=40, crop_ratio=1.0)
    store = FrameStore(db, frames=6, size=40, crop_ratio=1.0)
    assert store.names == folder.names and store.labels == folder.labels
    assert store.class_names == folder.class_names == ["run", "walk"]
    for i in range(len(store)):
        a, b = folder[i], store[i]
        assert torch.equal(a["image"], b["image"]) and a["label"] == b["label"] and a["name"] == b["name"]
        idx = store.clip_indices(i)
        want = np.stack([originals[store.names[i]][j][:, 4:44] for j in idx])
        assert torch.equal(b["image"], torch.from_numpy(want).permute(3, 0, 1, 2).float() / 255)
    for sampling in ("long_range", "dense"):  # same tensors at 112² with resampling too
        f, s = FrameFolder(src, frames=6, sampling=sampling), FrameStore(db, frames=6, sampling=sampling)
        assert all(torch.equal(f[i]["image"], s[i]["image"]) for i in range(3))


def test_frame_store_from_videos_and_jpeg(tmp_path, video_root):
    write_frames(tmp_path / "jpg" / "x-1", 8, "jpg")
    db = pack_frame_store([video_root, tmp_path / "jpg"], tmp_path / "mixed.sqlite", progress=False)
    store = FrameStore(db, frames=4)
    assert store.names == ["run/b", "walk/a", "x-1"] and store.lengths == [24, 20, 8]
    assert store.class_names == ["run", "walk", "x"] and store.labels == [0, 1, 2]
    check_clip_matches(FrameStore(db, frames=8)[1]["image"], [0, 3, 5, 8, 11, 14, 16, 19])  # re-encoded JPEG
    conn = sqlite3.connect(db)
    blob = conn.execute("SELECT data FROM frames f JOIN videos v ON v.id = f.video_id "
                        "WHERE v.name='x-1' AND idx=0").fetchone()[0]
    assert blob == (tmp_path / "jpg" / "x-1" / "000000001.jpg").read_bytes()  # JPEG files kept as is
    conn.close()
    assert torch.equal(FrameFolder(tmp_path / "jpg", frames=4)[0]["image"], store[2]["image"])


def test_frame_store_workers_pickle_and_damage(tmp_path):
    write_frames(tmp_path / "f" / "a-1", 8)
    write_frames(tmp_path / "f" / "b-1", 8, seed=3)
    db = pack_frame_store(tmp_path / "f", tmp_path / "s.sqlite", progress=False)
    store = FrameStore(db, frames=4, size=32)
    first = store[0]["image"]
    clone = pickle.loads(pickle.dumps(store))  # the open connection is not pickled
    assert clone._conn is None and torch.equal(clone[0]["image"], first)
    loader = torch.utils.data.DataLoader(store, batch_size=2, num_workers=1)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 4, 32, 32) and torch.equal(batch["image"][0], first)
    store.close()
    with pytest.raises(InputError, match=r"s\.sqlite: video a-1 has 8 frame\(s\) but a clip needs 9"):
        FrameStore(db, frames=9)
    with pytest.warns(UserWarning, match=r"skipping [ab]-1"), pytest.raises(ConfigError, match="No usable videos"):
        FrameStore(db, frames=9, skip_bad=True)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM frames WHERE idx = 7")
    conn.commit()
    conn.close()
    with pytest.raises(InputError, match=r"s\.sqlite: video a-1 lacks frames \[7\]"):
        FrameStore(db, frames=4, size=32)[0]
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="Could not read frame store .*junk.sqlite"):
        FrameStore(tmp_path / "junk.sqlite")
    with pytest.raises(ConfigError, match="Frame store not found"):
        FrameStore(tmp_path / "none.sqlite")


def test_corrupt_blob_in_the_frame_store(tmp_path):
    """One frame blob cut in half inside the SQLite store: the error names the store, the video and
    the frame and says to re-pack; with skip_bad the clip is skipped with that reason."""
    write_frames(tmp_path / "f" / "a-1", 8)
    write_frames(tmp_path / "f" / "b-1", 8, seed=3)
    db = pack_frame_store(tmp_path / "f", tmp_path / "s.sqlite", format="png", progress=False)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE frames SET data = substr(data, 1, length(data) / 2) "
                 "WHERE idx = 5 AND video_id = (SELECT id FROM videos WHERE name = 'a-1')")
    conn.commit()
    conn.close()
    strict = FrameStore(db, frames=8, size=32)
    assert strict.names == ["a-1", "b-1"] and strict[1]["image"].shape == (3, 8, 32, 32)
    with pytest.raises(InputError, match=r"Frame store .*s\.sqlite: frame 5 of video a-1 does not decode "
                                         r"\(corrupt png blob\)\. Re-pack it with `vizlab pack-frames .*"
                                         r"dataset\.skip_bad=true"):
        strict[0]
    sparse = FrameStore(db, frames=4, size=32, sampling="long_range")  # frames 0, 2, 4, 6: not the damaged one
    assert sparse.clip_indices(0).tolist() == [0, 2, 4, 6] and sparse[0]["image"].shape == (3, 4, 32, 32)
    lenient = FrameStore(db, frames=8, size=32, skip_bad=True)
    with pytest.warns(UserWarning, match=r"skipping a-1: Frame store .*frame 5 of video a-1 does not decode"):
        item = lenient[0]
    assert SKIPPED in item and "image" not in item and torch.equal(lenient[1]["image"], strict[1]["image"])

    # a damaged page of the frames table itself: SQLite's own error, named the same way
    conn = sqlite3.connect(db)
    (root_page,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'frames'").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    data = bytearray(db.read_bytes())
    data[(root_page - 1) * page_size:root_page * page_size] = b"\xff" * page_size
    db.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"Frame store .*s\.sqlite: could not read the frames of video b-1 "
                                         r"\(database disk image is malformed\); the file is damaged\. Re-pack it"):
        FrameStore(db, frames=8, size=32)[1]
    with pytest.warns(UserWarning, match=r"skipping b-1: Frame store .*could not read the frames of video b-1"):
        assert SKIPPED in FrameStore(db, frames=8, size=32, skip_bad=True)[1]


def test_pack_bad_input_is_atomic(tmp_path, video_root):
    src = tmp_path / "vids"
    write_video(src / "ok.mp4", 6)
    (src / "broken.mp4").write_bytes(b"garbage" * 300)
    out = tmp_path / "store.sqlite"
    out.write_bytes(b"previous store")
    with pytest.raises(InputError, match=r"broken\.mp4"):
        pack_frame_store(src, out, progress=False)
    assert out.read_bytes() == b"previous store"  # the old file is untouched, no temp file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.sqlite", "vids"]
    with pytest.warns(UserWarning, match=r"skipping broken"):
        pack_frame_store(src, out, skip_bad=True, progress=False)
    assert FrameStore(out, frames=6).names == ["ok"]


def test_pack_main_cli(tmp_path, capsys):
    write_frames(tmp_path / "f" / "a-1", 5)
    out = tmp_path / "cli.sqlite"
    assert pack_main([str(tmp_path / "f"), "--out", str(out), "--format", "png", "--quiet"]) == 0
    assert "1 videos, 5 frames, png" in capsys.readouterr().out
    assert FrameStore(out, frames=5).lengths == [5]
    assert pack_main([str(tmp_path / "missing"), "--out", str(out), "--quiet"]) == 2
    assert "Pack source not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", ["video_folder", "frame_folder", "frame_sqlite"])
def test_configs_build_datasets(name, tmp_path, video_root):
    cfg = OmegaConf.load(ROOT / "conf" / "dataset" / f"{name}.yaml")
    assert cfg.name == name and cfg.frames is None and cfg.sampling == "uniform" and cfg.skip_bad is False
    key = "path" if name == "frame_sqlite" else "root"
    assert OmegaConf.is_missing(cfg, key)
    with pytest.raises(ConfigError, match=f"needs dataset.{key}"):
        build_clip_dataset({**OmegaConf.to_container(cfg), key: None}, 112, 16)
    write_frames(tmp_path / "f" / "a-1", 10)
    value = {"video_folder": str(video_root), "frame_folder": str(tmp_path / "f"),
             "frame_sqlite": str(pack_frame_store(tmp_path / "f", tmp_path / "s.sqlite", progress=False))}[name]
    cfg[key] = value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = build_clip_dataset(cfg, 64, 8)  # frames: null → the model's T
    assert ds.frames == 8 and ds[0]["image"].shape == (3, 8, 64, 64)
    cfg.frames = 4
    assert build_clip_dataset(cfg, 32, 16)[0]["image"].shape == (3, 4, 32, 32)
    with pytest.raises(ConfigError, match="Unknown dataset.sampling"):
        build_clip_dataset({**OmegaConf.to_container(cfg), "sampling": "unifrom"}, 32, 16)
