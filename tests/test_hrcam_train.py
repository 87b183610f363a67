"""HR-CAM training from the command line: train_half then train_full on tiny synthetic shapes, the W&B
run read back, the verified weight transfer and frozen classifier, resume, class folders,
evaluate_classifier (half == full), the hrcam method in the explain loop, and bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import PYTHON, ROOT, run_cli

from vizlab.errors import CheckpointError, ConfigError
from vizlab.loggers import read_offline_run
from vizlab.models import load_model
from vizlab.models.hrcam import FullModel, HalfModel, half_keys
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
    assert (half["model"]["name"], full["model"]["name"]) == ("hrcam_half", "hrcam_full")
    # the full model really is the FullModel (not the half one loaded twice), and it classifies every sample
    # exactly as the half model does
    from vizlab.data import build_dataset

    half_model, full_model = load_model("hrcam_half"), load_model("hrcam_full")
    assert type(half_model.net) is HalfModel and type(full_model.net) is FullModel
    assert "a_high" in full_model.net.features(torch.zeros(1, 3, 32, 32)) and not hasattr(half_model.net, "up")
    data = build_dataset(dict(compose("dataset=synthetic_shapes", "dataset.num_samples=40").dataset), 32)
    images = torch.stack([data[i]["image"] for i in range(len(data))])
    with torch.no_grad():
        half_logits = half_model(half_model.normalize(images))
        full_logits = full_model(full_model.normalize(images))
    assert torch.equal(half_logits.argmax(1), full_logits.argmax(1))
    torch.testing.assert_close(half_logits, full_logits, rtol=0, atol=1e-6)
    correct = int((full_logits.argmax(1) == torch.tensor([data[i]["label"] for i in range(len(data))])).sum())
    assert correct / 40 == pytest.approx(full["summary"]["accuracy"])  # the task scored these very predictions


DELINS = ["metric=[pointing_game,mask_iou,deletion_insertion]", "metric.deletion_insertion.steps=16",
          "metric.deletion_insertion.batch_size=34"]


def test_hrcam_method_in_the_explain_loop(trained, tmp_path, monkeypatch):
    """low / high / refined in-process, scored by pointing, mask IoU and deletion/insertion (16 steps)."""
    from vizlab.tasks.explain import run_explain

    monkeypatch.setenv("VIZLAB_CACHE", str(trained[0]))
    summaries = {}
    for stage in ("low", "high", "refined"):
        cfg = compose("task=explain", "model=hrcam_full", "method=hrcam", f"method.stage={stage}",
                      "dataset=synthetic_shapes", "dataset.num_samples=8", *DELINS, "logger=none",
                      "task.save_maps=true", "method.pipeline={hole_area: 16}", "method.figures=false")
        results = run_explain(cfg, tmp_path / stage)
        s = summaries[stage] = results["summary"]
        assert s["num_samples"] == 8 and "pointing_accuracy" in s
        saliency = np.load(next((tmp_path / stage / "maps").glob("*_saliency.npy")))
        assert saliency.shape == (32, 32) and 0 <= saliency.min() and saliency.max() <= 1
        for sample in results["samples"]:
            for key in ("deletion_auc", "insertion_auc"):
                assert 0 <= sample["metrics"][key] <= 1
        for key in ("deletion_auc", "insertion_auc"):
            mean = sum(r["metrics"][key] for r in results["samples"]) / 8
            assert s[key] == pytest.approx(mean, abs=1e-6)
        assert results["metrics_config"]["deletion_insertion"]["steps"] == 16
        assert not list((tmp_path / stage / "heatmaps").glob("*_pipeline.png"))  # method.figures=false
    # the loop scored the refined map itself: the metric recomputed on the saved map gives the same AUCs
    from vizlab.data import build_dataset
    from vizlab.metrics import DeletionInsertion

    model = load_model("hrcam_full")
    data = build_dataset(dict(compose("dataset=synthetic_shapes", "dataset.num_samples=8").dataset), 32)
    metric = DeletionInsertion(model, steps=16, batch_size=34)
    for record in results["samples"][:2]:
        (rel,) = [f for f in record["files"] if f.endswith("_saliency.npy")]
        saliency = torch.from_numpy(np.load(tmp_path / "refined" / rel))
        x = model.normalize(data[record["index"]]["image"][None])
        direct = metric.evaluate(x, saliency[None], torch.tensor([record["target"]]))
        for key in ("deletion_auc", "insertion_auc"):
            assert record["metrics"][key] == pytest.approx(float(direct[key][0]), abs=1e-5)
    # Measured on this tiny 2-epoch model (2 of 8 predictions right, class probabilities ~0.25 = 1/K):
    # deletion / insertion AUC low 0.256 / 0.261, high 0.267 / 0.257, refined 0.258 / 0.260: all within
    # 0.03 of chance, so deletion < insertion is noise here and is not asserted (see docs/hrcam.md for the
    # trained experiment=hrcam_shapes model, where it is measured on 200 images).
    for stage in ("low", "high", "refined"):
        for key in ("deletion_auc", "insertion_auc"):
            assert abs(summaries[stage][key] - 0.25) < 0.05, summaries[stage]


def test_pipeline_figures_in_heatmaps_results_and_the_wandb_run(trained, tmp_path, monkeypatch):
    """method=hrcam stage=refined from the CLI with logger=wandb (offline): one pipeline figure per sample,
    saved as heatmaps/<index>_<name>_pipeline.png, listed in results.json and logged as figures/pipeline."""
    monkeypatch.setenv("VIZLAB_CACHE", str(trained[0]))
    monkeypatch.setenv("WANDB_MODE", "offline")
    job = tmp_path / "explain"
    proc = run_cli(PYTHON, "run.py", "task=explain", "model=hrcam_full", "method=hrcam", "method.stage=refined",
                   "method.pipeline={hole_area: 16}", "dataset=synthetic_shapes", "dataset.num_samples=3",
                   "metric=none", "logger=wandb", f"hydra.run.dir={job}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = json.loads((job / "results.json").read_text())["samples"]
    assert len(samples) == 3
    pictures = []
    for sample in samples:
        rel = sample["figures"]["pipeline"]
        assert rel == f"heatmaps/{sample['index']:05d}_{sample['name']}_pipeline.png" and rel in sample["files"]
        picture = cv2.imread(str(job / rel))
        assert picture.shape == (1050, 1300, 3)  # the 12-panel matplotlib figure
        pictures.append(picture)
    assert not np.array_equal(pictures[0], pictures[1])  # one figure per image
    run = wandb_run(job)
    rows = [row for row in run["history"] if "figures/pipeline/_type" in row]
    assert len(rows) == 1 and rows[0]["figures/pipeline/count"] == 3
    assert rows[0]["figures/pipeline/_type"] == "images/separated"
    logged = [f for f in run["files"] if f.startswith("media/images/figures/pipeline_") and f.endswith(".png")]
    assert len(logged) == 3
    (run_dir,) = sorted((job / "wandb").glob("offline-run-*"))
    shapes = {cv2.imread(str(run_dir / "files" / f)).shape for f in logged}
    assert shapes == {(1050, 1300, 3)}
    assert "heatmaps/_type" in {k for row in run["history"] for k in row}  # the overlays are still logged too


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
    (["model.aux_channels=6"], "model.aux_channels=6 must equal model.growth=4"),
])
def test_bad_training_values_in_process(overrides, message, tmp_path, monkeypatch):
    from vizlab.tasks.train_hrcam import run_train_half

    monkeypatch.setenv("VIZLAB_CACHE", str(tmp_path / "cache"))
    cfg = compose("task=train_half", "logger=none", *SHAPES, *overrides)
    with pytest.raises((ConfigError, CheckpointError), match=message):
        run_train_half(cfg, tmp_path / "job")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("classes", "message"), [
    ("[disc,square,triangle]", "has 4 classes but dataset=synthetic_shapes has 3"),
    ("[square,disc,triangle,cross]", "was trained on classes ['disc', 'square', 'triangle', 'cross'] but the "
                                     "dataset has ['square', 'disc', 'triangle', 'cross']"),
])
def test_train_full_refuses_data_whose_classes_differ_from_the_half_model(trained, tmp_path, classes, message,
                                                                           monkeypatch):
    from vizlab.tasks.train_hrcam import run_train_full

    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("hrcam_half.pt", "hrcam_full.pt"):
        (cache / name).write_bytes((trained[0] / name).read_bytes())
    before = (cache / "hrcam_full.pt").read_bytes()
    monkeypatch.setenv("VIZLAB_CACHE", str(cache))
    cfg = compose("task=train_full", "logger=none", *SHAPES, f"+dataset.classes={classes}")
    with pytest.raises(CheckpointError, match=re.escape(message)):
        run_train_full(cfg, tmp_path / "job")
    assert (cache / "hrcam_full.pt").read_bytes() == before  # the cached full model is untouched
    assert all_files(tmp_path / "job") == []  # nothing trained, nothing written


def test_plateau_schedule_lowers_the_lr_and_early_stopping_ends_the_run(tmp_path, monkeypatch):
    """SGD with lr 1e-6 on one fixed batch (no augmentation): the training loss improves by less than
    ReduceLROnPlateau's threshold (1e-4 relative), so the plateau scheduler (patience 0) halves the lr after
    epoch 1 and after every epoch since; val/acc stalls (measured 0.25, 0.19, 0.31, 0.31, 0.31), so early
    stopping (patience 2) ends the run after 5 of 8 epochs. (With lr < 1e-8 the scheduler never fires:
    ReduceLROnPlateau ignores lr changes smaller than its eps 1e-8.)"""
    from vizlab.tasks.train_hrcam import run_train_half

    monkeypatch.setenv("VIZLAB_CACHE", str(tmp_path / "cache"))
    cfg = compose("task=train_half", "logger=none", *SHAPES, "task.num_train=16", "task.epochs=8",
                  "task.augment=null", "task.optimizer=sgd", "task.lr=1e-6", "task.weight_decay=0",
                  "task.plateau_patience=0", "task.plateau_factor=0.5", "task.min_lr=1e-12",
                  "task.early_stopping_patience=2", "task.cam_samples=0")
    results = run_train_half(cfg, tmp_path / "job")
    history = json.loads((tmp_path / "job" / "history.json").read_text())
    epochs = results["summary"]["epochs"]
    assert 3 <= epochs < 8 and len(history) == epochs  # stopped early, after the lr had dropped
    # the lr used in each epoch: unchanged in epochs 0-1, then halved after every epoch without improvement
    assert [row["lr"] for row in history] == pytest.approx([1e-6 * 0.5 ** max(0, e - 1) for e in range(epochs)],
                                                           rel=1e-6)


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
