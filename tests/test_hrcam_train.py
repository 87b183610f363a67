"""HR-CAM training from the command line: train_half then train_full on tiny synthetic shapes, the W&B
run read back, the verified weight transfer and frozen classifier, resume, class folders,
evaluate_classifier (half == full), the hrcam method in the explain loop, and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import PYTHON, ROOT, run_cli

from vizlab.errors import CheckpointError, ConfigError
from vizlab.loggers import read_offline_run
from vizlab.models import load_model
from vizlab.models.hrcam import half_keys
from vizlab.models.zoo import read_checkpoint

TINY = ["model.input_size=32", "model.blocks=3", "model.growth=4", "model.layers_per_block=2",
        "model.init_filters=8", "model.aux_channels=4", "task.num_train=32", "task.num_val=16",
        "task.batch_size=16", "task.epochs=2", "task.cam_samples=2", "task.progress_bar=false"]
SHAPES = ["dataset=synthetic_shapes", *TINY]


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def wandb_run(job: Path) -> dict:
    (run_dir,) = sorted((job / "wandb").glob("offline-run-*"))
    return read_offline_run(run_dir)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """train_half then train_full from the CLI into a fresh cache; returns (cache, half job, full job)."""
    root = tmp_path_factory.mktemp("hrcam")
    cache = root / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIZLAB_CACHE", str(cache))
        mp.setenv("WANDB_MODE", "offline")
        jobs = {}
        for stage in ("half", "full"):
            job = root / stage
            proc = run_cli(PYTHON, "run.py", f"task=train_{stage}", *SHAPES, f"hydra.run.dir={job}")
            assert proc.returncode == 0, proc.stderr[-3000:]
            jobs[stage] = job
    return cache, jobs["half"], jobs["full"], proc.stdout


def test_half_then_full_from_the_cli(trained):
    cache, half_job, full_job, stdout = trained
    half = json.loads((half_job / "results.json").read_text())
    full = json.loads((full_job / "results.json").read_text())
    assert half["task"] == "train_half" and half["summary"]["epochs"] == 2 and half["summary"]["steps"] == 4
    assert half["model"]["input_size"] == 32 and half["model"]["class_names"] == ["disc", "square", "triangle", "cross"]
    assert half["summary"]["train_images_per_second"] > 0 and half["summary"]["num_samples"] == 16
    for job in (half_job, full_job):
        assert (job / "checkpoints" / "last.ckpt").is_file()
        assert [r["epoch"] for r in json.loads((job / "history.json").read_text())] == [0, 1]
        assert sorted(p.name for p in (job / "cams").iterdir()) == ["epoch_000.png", "epoch_001.png"]
    picture = cv2.imread(str(full_job / "cams" / "epoch_001.png"))
    assert picture.shape == (2 * 128, 3 * 128, 3)  # 2 samples x (image | low | high), 32 px shown at 4x
    # the transfer was verified, and stage 2 left the classifier bit-for-bit unchanged
    s = full["summary"]
    assert s["classifier_unchanged"] is True and s["transferred_tensors"] > 50
    assert "copied and verified" in stdout and s["val_acc"] == s["half_val_acc"] and "val_recon" in s
    half_state = read_checkpoint(cache / "hrcam_half.pt")
    full_state = read_checkpoint(cache / "hrcam_full.pt")
    full_net = load_model("hrcam_full", checkpoint=cache / "hrcam_full.pt").net
    keys = half_keys(full_net) - {"hrcam_config"}
    assert keys == set(half_state) - {"hrcam_config"}
    assert all(torch.equal(half_state[k], full_state[k]) for k in keys)
    assert s["trained_parameters"] == sum(p.numel() for p in full_net.expansion_parameters())


def test_wandb_run_has_metrics_and_cam_pictures(trained):
    _, half_job, full_job, _ = trained
    for job, keys in ((half_job, {"train/loss", "train/acc", "val/loss", "val/acc"}),
                      (full_job, {"train/recon", "val/recon", "val/acc"})):
        run = wandb_run(job)
        logged = {k for row in run["history"] for k in row}
        assert keys <= logged, logged
        cams = [row for row in run["history"] if "cams/_type" in row]  # one picture set per epoch
        assert len(cams) == 2 and all(r["cams/_type"] == "images/separated" and r["cams/count"] == 2 for r in cams)
        assert sum(f.startswith("media/images/cams_") and f.endswith(".png") for f in run["files"]) == 4
        assert run["config"]["task"]["name"] == f"train_{job.name}"


def test_evaluate_classifier_half_equals_full(trained, tmp_path, monkeypatch):
    from vizlab.tasks.evaluate_classifier import run_evaluate_classifier

    cache = trained[0]
    monkeypatch.setenv("VIZLAB_CACHE", str(cache))
    scores = {}
    for name in ("hrcam_half", "hrcam_full"):
        cfg = compose("task=evaluate_classifier", f"model={name}", "dataset=synthetic_shapes",
                      "dataset.num_samples=40", "logger=none", "task.top_k=[1,2,5]")
        results = run_evaluate_classifier(cfg, tmp_path / name)
        assert json.loads((tmp_path / name / "results.json").read_text())["summary"] == results["summary"]
        scores[name] = results
    half, full = scores["hrcam_half"], scores["hrcam_full"]
    keys = ["accuracy", "top2_accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_micro",
            "recall_micro", "f1_micro"]
    assert {k: half["summary"][k] for k in keys} == {k: full["summary"][k] for k in keys}
    assert half["confusion_matrix"] == full["confusion_matrix"] and half["summary"]["num_samples"] == 40
    assert "top5_accuracy" not in half["summary"]  # k >= num_classes is skipped
    assert half["summary"]["f1_micro"] == pytest.approx(half["summary"]["accuracy"])
    assert set(half["per_class"]) == {"disc", "square", "triangle", "cross"}


def test_hrcam_method_in_the_explain_loop(trained, tmp_path, monkeypatch):
    from vizlab.tasks.explain import run_explain

    monkeypatch.setenv("VIZLAB_CACHE", str(trained[0]))
    for stage in ("low", "high", "refined"):
        cfg = compose("task=explain", "model=hrcam_full", "method=hrcam", f"method.stage={stage}",
                      "dataset=synthetic_shapes", "dataset.num_samples=4", "metric=[pointing_game,mask_iou]",
                      "logger=none", "task.save_maps=true", "method.pipeline={hole_area: 16}")
        results = run_explain(cfg, tmp_path / stage)
        assert results["summary"]["num_samples"] == 4 and "pointing_accuracy" in results["summary"]
        saliency = np.load(next((tmp_path / stage / "maps").glob("*_saliency.npy")))
        assert saliency.shape == (32, 32) and 0 <= saliency.min() and saliency.max() <= 1


def test_resume_and_class_folder_tree(trained, tmp_path, monkeypatch):
    from vizlab.tasks.train_hrcam import run_train_half

    monkeypatch.setenv("VIZLAB_CACHE", str(tmp_path / "cache"))
    last = trained[1] / "checkpoints" / "last.ckpt"
    cfg = compose("task=train_half", "logger=none", *SHAPES, "task.epochs=3", f"task.resume={last}")
    results = run_train_half(cfg, tmp_path / "resumed")
    assert results["summary"]["epochs"] == 3 and results["summary"]["steps"] == 6  # one more epoch
    # an ImageNet-style tree: root/train/<class>/*.png and root/test/<class>/*.png
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 2)):
        for cls in ("n01440764", "n01443537", "n01484850"):
            folder = tmp_path / "tree" / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    cfg = compose("task=train_half", "dataset=image_folder", f"dataset.root={tmp_path / 'tree'}", "logger=csv",
                  *TINY[:6], "task.batch_size=4", "task.epochs=1", "task.progress_bar=false")
    results = run_train_half(cfg, tmp_path / "folder")
    assert results["summary"]["steps"] == 4 and results["summary"]["num_samples"] == 6
    assert results["model"]["class_names"] == ["n01440764", "n01443537", "n01484850"]
    assert (tmp_path / "folder" / "csv" / "metrics.csv").read_text().count("val/acc") >= 1
    model = load_model("hrcam_half")  # the cache now holds the 3-class model
    assert model.info.num_classes == 3 and model.class_name(1) == "n01443537"


@pytest.mark.parametrize(("overrides", "message"), [
    (["task.epochs=0"], "task.epochs must be an integer >= 1"),
    (["task.optimizer=adam"], "task.optimizer must be one of"),
    (["task.augment.p=2"], "task.augment.p is a probability"),
    (["task.resume=/nonexistent/last.ckpt"], "task.resume=/nonexistent/last.ckpt does not exist"),
    (["dataset=samples"], "trains on a labelled dataset"),
    (["model.num_classes=3"], "model.num_classes=3 but the dataset has 4 classes"),
])
def test_bad_training_values_in_process(overrides, message, tmp_path, monkeypatch):
    from vizlab.tasks.train_hrcam import run_train_half

    monkeypatch.setenv("VIZLAB_CACHE", str(tmp_path / "cache"))
    cfg = compose("task=train_half", "logger=none", *SHAPES, *overrides)
    with pytest.raises((ConfigError, CheckpointError), match=message):
        run_train_half(cfg, tmp_path / "job")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("task", "overrides", "message", "use_trained"), [
    ("train_full", [], "task=train_full needs a trained HalfModel", False),
    ("train_full", ["model.num_classes=3"], "has 4 classes but model.num_classes=3", True),
    ("train_half", ["model.input_size=60"], "model.input_size=60 must be divisible by 2**(blocks + 1) = 16", False),
])
def test_bad_input_fails_with_one_line_and_leaves_nothing(trained, tmp_path, task, overrides, message, use_trained,
                                                          monkeypatch):
    monkeypatch.setenv("VIZLAB_CACHE", str(trained[0] if use_trained else tmp_path / "cache"))
    out = tmp_path / "outputs"
    proc = run_cli(PYTHON, "run.py", f"task={task}", *SHAPES, *overrides, f"paths.output_root={out}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("vizlab: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert all_files(out) == []


@pytest.mark.slow
def test_train_half_with_ddp_on_two_cpu_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("VIZLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    job = tmp_path / "ddp"
    proc = run_cli(PYTHON, "run.py", "task=train_half", *SHAPES, "hardware=ddp_cpu", f"hydra.run.dir={job}",
                   timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((job / "results.json").read_text())
    assert results["summary"]["steps"] == 2  # 32 images over 2 ranks of batch 16: 1 step per epoch
    run = wandb_run(job)
    assert {"train/loss", "val/acc"} <= {k for row in run["history"] for k in row}
    assert any("cams/_type" in row for row in run["history"])


def test_an_interrupted_run_keeps_its_checkpoints(tmp_path):
    from vizlab.tasks import RESUMABLE, remove_run_outputs

    job = tmp_path / "job"
    for name in (".hydra/config.yaml", "run.log", "checkpoints/last.ckpt", "wandb/run.wandb", "history.json"):
        (job / name).parent.mkdir(parents=True, exist_ok=True)
        (job / name).write_text("x")
    remove_run_outputs(job, "run", set(), tmp_path, keep=RESUMABLE)
    assert sorted(p.name for p in job.iterdir()) == [".hydra", "checkpoints", "run.log"]
    remove_run_outputs(job, "run", set(), tmp_path)  # a bad-config failure still leaves nothing
    assert not job.exists()
