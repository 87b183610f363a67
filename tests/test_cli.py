"""End to end from the command line: `make run`, overrides, sweeps, errors that leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PYTHON, ROOT, run_cli
from PIL import Image


def job_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("results.json"))


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_make_run_end_to_end(tmp_path):
    out = tmp_path / "outputs"
    # the default job (W&B offline logger, deletion/insertion) with fewer metric steps to keep CI fast
    proc = run_cli("make", "run", f"ARGS=paths.output_root={out} metric.deletion_insertion.steps=10", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = job_dirs(out)
    assert f"results: {job / 'results.json'}" in proc.stdout
    results = json.loads((job / "results.json").read_text())
    by_name = {s["name"]: s for s in results["samples"]}
    assert by_name["chelsea"]["target"] == 285 and by_name["chelsea"]["target_name"] == "Egyptian cat"
    assert by_name["coffee"]["target"] == 967 and by_name["coffee"]["target_name"] == "espresso"
    assert results["model"]["name"] == "efficientnet_lite0" and results["method"]["name"] == "gradcam"
    assert results["summary"]["num_samples"] == 4 and results["summary"]["seconds_per_sample"] > 0
    assert 0 <= results["summary"]["deletion_auc"] < results["summary"]["insertion_auc"] <= 1
    assert results["metrics_config"]["deletion_insertion"]["steps"] == 10
    assert list((job / "wandb").glob("offline-run-*/run-*.wandb"))
    # a quiet first run: no library chatter, one bar counting samples, a summary table, where the files are
    output = proc.stdout + proc.stderr
    for noise in ("LeafSpec", "Tip:", "GPU available", "0/?", "wandb:", "Traceback"):
        assert noise not in output, noise
    assert "4/4" in proc.stderr and "sample" in proc.stderr
    lines = proc.stdout.splitlines()
    done = next(i for i, line in enumerate(lines) if line.startswith("vizlab: explain done: 4 samples"))
    header, row = lines[done + 1:done + 3]
    assert header.split() == ["method", "model", "samples", "deletion_auc", "insertion_auc", "s/sample"]
    assert row.split()[:3] == ["gradcam", "efficientnet_lite0", "4"]
    assert float(row.split()[3]) == pytest.approx(results["summary"]["deletion_auc"], abs=5e-4)
    assert "W&B run (offline):" in proc.stdout
    for sample in results["samples"]:
        (png,) = sample["files"]
        image = cv2.imread(str(job / png))
        assert image is not None and image.shape[1] == 224 and image.shape[0] > 224  # caption bar on top
    assert (job / ".hydra" / "config.yaml").is_file()
    assert not (job / ".staging").exists() and not (job / "maps").exists()


def test_overrides_raw_maps_and_console_script(tmp_path):
    out = tmp_path / "o"
    proc = run_cli("vizlab", "method=integrated_gradients", "method.steps=4", "task.save_maps=true",
                   "dataset.images=[chelsea]", "task.target=281", "metric=none", "logger=none",
                   f"paths.output_root={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = job_dirs(out)
    results = json.loads((job / "results.json").read_text())
    (sample,) = results["samples"]
    assert sample["target"] == 281 and results["method"]["steps"] == 4
    saliency = np.load(job / "maps" / "00000_chelsea_saliency.npy")
    raw = np.load(job / "maps" / "00000_chelsea_raw.npy")
    assert saliency.shape == (224, 224) and 0 <= saliency.min() and saliency.max() <= 1
    assert raw.shape == (3, 224, 224) and (raw < 0).any()


def test_sweep_over_methods(tmp_path):
    out = tmp_path / "sweep"
    proc = run_cli(PYTHON, "run.py", "-m", "method=cam,gradcam", "dataset.images=[coffee]", "logger=none",
                   "metric.deletion_insertion.steps=5", f"paths.output_root={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_dirs(out)
    assert len(jobs) == 2
    methods = {json.loads((j / "results.json").read_text())["method"]["name"] for j in jobs}
    assert methods == {"cam", "gradcam"}


def test_list_commands(capsys):
    """The console script once (a subprocess costs ~6 s of imports), then the other listings in-process."""
    from vizlab.cli import main

    proc = run_cli("vizlab", "layers", "efficientnet_lite0", "blocks.6")
    assert proc.returncode == 0 and "blocks.6.0.conv_pw" in proc.stdout.split()
    assert "random weights" not in proc.stderr  # the model ships its weights; a layer list needs none
    main(["models"])
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "r2plus1d_18" in out
    main(["methods"])
    out = capsys.readouterr().out
    assert "integrated_gradients" in out and "steps=25" in out


def _corrupt_image(tmp_path: Path) -> Path:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return path


def bomb_png(path: Path, width: int = 60000, height: int = 60000) -> Path:
    """A valid 8×8 PNG whose header claims width × height pixels (a decompression bomb's header)."""
    import io
    import struct
    import zlib

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytearray(data[16:29])  # after the signature: length, b"IHDR", 13 bytes of data, CRC
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


class _Payload:
    """Unpickling this would run print(): what weights_only loading must refuse."""

    def __reduce__(self):
        return (print, ("payload ran",))


def _files(tmp_path: Path) -> dict[str, Path]:
    """Bad inputs for the in-process checks, by placeholder name."""
    import torch

    good = tmp_path / "tree" / "cls" / "a_good.png"
    good.parent.mkdir(parents=True)
    Image.new("RGB", (64, 64), (200, 30, 30)).save(good)
    bomb_png(tmp_path / "tree" / "cls" / "b_bomb.png")  # sorted after a_good: fails while the loop runs
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    pickled = tmp_path / "payload.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": _Payload()}, pickled)
    return {"CORRUPT": _corrupt_image(tmp_path), "BOMB": bomb_png(tmp_path / "bomb.png"), "TREE": tmp_path / "tree",
            "GOOD": good, "GARBAGE": garbage, "PICKLE": pickled}


@pytest.mark.parametrize(("command", "overrides", "message"), [
    ([PYTHON, "run.py"], ["model=resnet5"], "Unknown model=resnet5. Did you mean: 'resnet50', 'resnet18'"),
    (["vizlab"], ["method.layr=bn2"], "Unknown option 'method.layr'. Did you mean: 'method.layer'?"),
    ([PYTHON, "run.py"], ["method.layer=bn_2"], "Layer 'bn_2' not found"),
])
def test_bad_config_fails_fast_and_leaves_nothing(tmp_path, command, overrides, message):
    """From the command line (run.py and the console script): Hydra's composition errors and a
    vizlab check, each exactly one stderr line, exit status 2, no traceback, no append hint, no output."""
    out = tmp_path / "outputs"
    proc = run_cli(*command, *overrides, f"paths.output_root={out}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("vizlab: error: ") and message in line, line
    assert "To append" not in proc.stderr and "+method" not in proc.stderr
    assert all_files(out) == []


@pytest.mark.parametrize(("overrides", "message"), [
    (["task.target=1000"], "task.target=1000 is out of range"),
    (["model=resnet18", "model.checkpoint=/nonexistent/r18.pth"], "Checkpoint file not found"),
    (["method=integrated_gradients", "method.polarity=up"], "polarity must be one of"),
    (["method.temporal=mean"], "temporal must be"),
    (["dataset.images=[chelsee]"], "Unknown sample image"),
    (["dataset=image", "dataset.path=CORRUPT"], "corrupt or not an image"),
    (["hardware.accelerator=tpu"], "hardware.accelerator must be one of"),
    (["task.max_samples=0"], "task.max_samples must be an integer >= 1 or null; got 0."),
    (["task.max_samples=-1"], "task.max_samples must be an integer >= 1 or null; got -1."),
    (["method=integrated_gradients", "method.steps=abc"], "method.steps must be an integer; got 'abc' (str)."),
    (["method=integrated_gradients", "method.steps=2.5"], "method.steps must be an integer; got 2.5."),
    (["model.num_classes=0"], "model.num_classes must be an integer >= 1 or null; got 0."),
    (["task.target=2.7"], "task.target must be null (the predicted class), 'label'"),
    (["metric.deletion_insertion.steps=ten"], "metric.deletion_insertion.steps must be an integer"),
    (["hardware.threads=0"], "hardware.threads must be an integer >= 1"),
    (["dataset=image", "dataset.path=BOMB"], "claims 60000×60000 pixels (3600 MP), more than dataset.max_pixels"),
    (["dataset=image", "dataset.path=GOOD", "dataset.max_pixels=1000"], "claims 64×64 pixels"),
    (["dataset=image_folder", "dataset.root=TREE", "task.batch_size=1", "metric=none", "logger=none"],
     "b_bomb.png claims 60000×60000 pixels"),  # mid-run: the first image is explained, the second fails
    (["model=resnet18", "model.checkpoint=GARBAGE"], "garbage.pth is not a state dict vizlab can load safely"),
    (["model=resnet18", "model.checkpoint=PICKLE"], "payload.pth is not a state dict vizlab can load safely"),
])
def test_bad_config_values_fail_with_one_line_in_process(tmp_path, monkeypatch, capsys, overrides, message):
    """The same checks through `run_task` in this process (the CLI's code path after Hydra's
    composition, without a new interpreter per case): exit status 2, one `vizlab: error:` line and
    no traceback, never a hint to load unsafely, nothing written."""
    from hydra import compose, initialize_config_dir

    from vizlab.tasks import run_task

    files = _files(tmp_path)
    overrides = [o.split("=", 1)[0] + "=" + str(files.get(o.split("=", 1)[1], o.split("=", 1)[1])) for o in overrides]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"paths.output_root={work}"])
    with pytest.raises(SystemExit) as exit_info:
        run_task(cfg)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    (line,) = [x for x in captured.err.splitlines() if x.startswith("vizlab: error:")]
    assert message in line
    assert "Traceback" not in captured.err and "weights_only" not in line and "payload ran" not in captured.out
    assert all_files(work) == []


def test_gif_mp4_and_strip_for_clips(tmp_path):
    """Clip overlays: a frame strip PNG, an animated GIF and an MP4 with one frame per clip frame."""
    import torch

    from vizlab.viz.outputs import SampleWriter

    frames = torch.rand(3, 6, 32, 32)
    saliency = torch.rand(6, 32, 32)
    files = SampleWriter(tmp_path).write(0, "clip", frames, saliency, saliency, "test")
    assert files == ["heatmaps/00000_clip_strip.png", "heatmaps/00000_clip.gif", "heatmaps/00000_clip.mp4"]
    gif = Image.open(tmp_path / files[1])
    assert gif.n_frames == 6 and gif.size == (32, 32)
    video = cv2.VideoCapture(str(tmp_path / files[2]))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == 32
    strip = cv2.imread(str(tmp_path / files[0]))
    assert strip.shape[1] == 6 * 32 + 5 * 2
