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


def test_list_commands():
    proc = run_cli("vizlab", "layers", "resnet18", "layer4.1")
    assert proc.returncode == 0 and "layer4.1.conv2" in proc.stdout.split()
    proc = run_cli("vizlab", "models")
    assert "efficientnet_lite0" in proc.stdout and "r2plus1d_18" in proc.stdout
    proc = run_cli("vizlab", "methods")
    assert "integrated_gradients" in proc.stdout and "steps=25" in proc.stdout


def _corrupt_image(tmp_path: Path) -> Path:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return path


@pytest.mark.parametrize(("overrides", "message"), [
    (["model=resnet5"], "Could not find 'model/resnet5'"),
    (["method.layer=bn_2"], "Layer 'bn_2' not found"),
])
def test_bad_config_fails_fast_and_leaves_nothing(tmp_path, overrides, message):
    """From the command line: a Hydra composition error and a vizlab check, each one message, exit
    status != 0, no traceback and no output directory."""
    out = tmp_path / "outputs"
    proc = run_cli(PYTHON, "run.py", *overrides, f"paths.output_root={out}")
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert all_files(out) == []


@pytest.mark.parametrize(("overrides", "message"), [
    (["task.target=1000"], "task.target=1000 is out of range"),
    (["model=resnet18", "model.checkpoint=/nonexistent/r18.pth"], "Checkpoint file not found"),
    (["method=integrated_gradients", "method.polarity=up"], "polarity must be one of"),
    (["method.temporal=mean"], "temporal must be"),
    (["dataset.images=[chelsee]"], "Unknown sample image"),
    (["dataset=image", "dataset.path=CORRUPT"], "corrupt or not an image"),
    (["hardware.accelerator=tpu"], "hardware.accelerator must be one of"),
])
def test_bad_config_values_fail_with_one_line_in_process(tmp_path, monkeypatch, capsys, overrides, message):
    """The same checks through `run_task` in this process (the CLI's code path after Hydra's
    composition, without a new interpreter per case): exit status 2, one `vizlab: error:` line,
    nothing written."""
    from hydra import compose, initialize_config_dir

    from vizlab.tasks import run_task

    overrides = [o.replace("CORRUPT", str(_corrupt_image(tmp_path))) for o in overrides]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"paths.output_root={work}"])
    with pytest.raises(SystemExit) as exit_info:
        run_task(cfg)
    assert exit_info.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("vizlab: error:")]
    assert message in line
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
