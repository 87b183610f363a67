"""Synthetic motion: deterministic clips with per-frame object masks whose class is the direction
of motion; motion_cnn trained with Lightning (task=train_motion, or task=train following
dataset=synthetic_motion / model=motion_cnn); the cached checkpoint; Grad-CAM's spatio-temporal peak
on the moving object."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from conftest import PYTHON, ROOT, run_cli
from omegaconf import OmegaConf, open_dict
from torch.utils.data import DataLoader

from vizlab.data import build_dataset
from vizlab.data.synthetic_motion import CLASS_NAMES, DIRECTIONS, SyntheticMotion, make_motion_split
from vizlab.errors import CheckpointError, ConfigError
from vizlab.metrics import pointing_hits
from vizlab.models import load_model
from vizlab.models.synthetic import MotionCNN

TOLERANCE = 3  # px at 48²


def centroids(masks: torch.Tensor) -> torch.Tensor:
    """(T, S, S) bool masks → (T, 2) centroids (x, y)."""
    ys, xs = torch.meshgrid(torch.arange(masks.shape[-2]), torch.arange(masks.shape[-1]), indexing="ij")
    area = masks.flatten(1).sum(1).float()
    return torch.stack([(masks * xs).flatten(1).sum(1) / area, (masks * ys).flatten(1).sum(1) / area], 1)


def test_clips_are_deterministic_and_shaped():
    a, b = SyntheticMotion(20, seed=3), SyntheticMotion(20, seed=3)
    for i in (0, 7, 19):
        x, y = a[i], b[i]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"])
        assert x["label"] == i % 4 and x["name"] == f"motion_{i:05d}"
    assert x["image"].shape == (3, 8, 48, 48) and x["image"].dtype == torch.float32
    assert x["mask"].shape == (8, 48, 48) and x["mask"].dtype == torch.bool
    assert not torch.equal(SyntheticMotion(20, seed=4)[7]["image"], a[7]["image"])
    clips, labels, masks = make_motion_split(12, seed=3)
    assert torch.equal(clips[7].float() / 255, a[7]["image"]) and torch.equal(masks[7], a[7]["mask"])
    assert clips.dtype == torch.uint8 and labels.tolist() == [i % 4 for i in range(12)]


def test_the_object_moves_in_the_labelled_direction_and_the_background_moves_at_random():
    clips, labels, masks = make_motion_split(200, seed=5)
    drifts = []
    for clip, label, mask in zip(clips, labels, masks, strict=True):
        assert (mask.flatten(1).sum(1) > 40).all()  # the object is in every frame
        c = centroids(mask)
        step = (c[-1] - c[0]) / (len(c) - 1)
        direction = torch.tensor(DIRECTIONS[CLASS_NAMES[label]], dtype=torch.float32)
        assert float(step @ direction) > 0.03 * 48 * 0.9  # at least SPEED[0] px/frame along the direction
        assert abs(float(step @ direction.flip(0))) < 0.3  # and not across it
        # background drift: the best integer shift between the first two frames, away from the object
        f0, f1 = clip[:, 0].float().mean(0), clip[:, 1].float().mean(0)
        keep = ~(mask[0] | mask[1])
        errors = {}
        for dy in range(-3, 4):
            for dx in range(-3, 4):
                shifted = torch.roll(f0, (-dy, -dx), (0, 1))
                ok = keep[4:-4, 4:-4]
                errors[(dx, dy)] = float(((shifted - f1)[4:-4, 4:-4][ok]).abs().mean())
        drifts.append(min(errors, key=errors.get))
    drifts = np.array(drifts, float)
    # the drift is not the object's direction: per class, the mean drift is small against its spread
    for k in range(4):
        d = drifts[labels.numpy() == k]
        assert np.abs(d.mean(0)).max() < 0.6, (CLASS_NAMES[k], d.mean(0))
    assert (np.abs(drifts).sum(1) > 0).mean() > 0.5  # most backgrounds do move


def test_the_clip_average_position_carries_no_class_information():
    _, labels, masks = make_motion_split(400, seed=6)
    mean_pos = torch.stack([centroids(m).mean(0) for m in masks]) / 48
    train, test = slice(0, 200), slice(200, 400)
    means = torch.stack([mean_pos[train][labels[train] == k].mean(0) for k in range(4)])
    pred = torch.cdist(mean_pos[test], means).argmin(1)
    assert (pred == labels[test]).float().mean() < 0.4


def test_bad_config_values_fail_clearly():
    with pytest.raises(ConfigError, match="size must be an integer >= 32"):
        SyntheticMotion(10, size=16)
    with pytest.raises(ConfigError, match="frames must be an integer >= 4"):
        SyntheticMotion(10, frames=2)
    with pytest.raises(ConfigError, match=r"Unknown motion class\(es\) \['sideways'\]"):
        SyntheticMotion(10, classes=["left", "sideways"])
    with pytest.raises(ConfigError, match="is an image model"):
        build_dataset({"name": "synthetic_motion"}, 48, is_video=False)


def test_builder_resizes_to_the_model_clip():
    ds = build_dataset({"name": "synthetic_motion", "num_samples": 4, "size": 48, "frames": 8, "seed": 1}, 64,
                       is_video=True, frames=16)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 64, 64) and batch["mask"].shape == (4, 16, 64, 64)
    assert batch["label"].tolist() == [0, 1, 2, 3]


def test_missing_checkpoint_says_how_to_train(monkeypatch, tmp_path):
    monkeypatch.setenv("VIZLAB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"run `python run.py task=train_motion`"):
        load_model("motion_cnn")
    with pytest.raises(CheckpointError, match=r"no trained motion_cnn16 checkpoint .* run `python run.py task=train "
                                              r"model=motion_cnn16`"):
        load_model("motion_cnn16")


def test_the_dataset_follows_the_models_clip_length():
    """dataset=synthetic_motion leaves frames null: 8-frame clips for motion_cnn, 16 for motion_cnn16
    (generated at that length, not resampled), and an explicit dataset.frames still wins."""
    spec = OmegaConf.load(ROOT / "conf" / "dataset" / "synthetic_motion.yaml")
    for name, frames in (("motion_cnn", 8), ("motion_cnn16", 16)):
        info = load_model(name, pretrained=False).info
        ds = build_dataset(spec, info.input_size, True, info.frames)
        assert info.frames == frames and ds[0]["image"].shape == (3, frames, 48, 48)
        assert torch.equal(ds[1]["mask"], SyntheticMotion(2, frames=frames, seed=spec.seed)[1]["mask"])
    assert build_dataset({**spec, "frames": 12}, 48, True, 12)[0]["image"].shape == (3, 12, 48, 48)


def test_train_motion_config_errors(tmp_path):
    from hydra import compose, initialize_config_dir

    from vizlab.tasks.train import run_train

    def cfg(*overrides: str):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("config", overrides=["task=train_motion", "logger=none", *overrides])

    with pytest.raises(ConfigError, match="model=motion_cnn trains on dataset=synthetic_motion"):
        run_train(cfg("dataset=synthetic_shapes"), tmp_path)
    with pytest.raises(ConfigError, match="trained on 8-frame clips; got dataset.frames=16"):
        run_train(cfg("dataset.frames=16"), tmp_path)
    with pytest.raises(ConfigError, match="trained at 48 px"):
        run_train(cfg("dataset.size=64"), tmp_path)
    assert not any(tmp_path.iterdir())


def compose(*overrides: str, job: bool = False):
    """The composed config (logger=none); with `job`, also set up as inside a running Hydra job (the
    command-line overrides visible through HydraConfig; undone by the `hydra_job` fixture)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[*overrides, "logger=none"], return_hydra_config=job)
    if job:
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # as Hydra hands it to the task
    return cfg


@pytest.fixture
def hydra_job():
    from hydra.core.hydra_config import HydraConfig

    yield
    HydraConfig.instance().cfg = None


def plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


MOTION_RECIPE = {"epochs": 5, "batch_size": 32, "lr": 0.003, "num_train": 2000, "num_val": 500}


def test_task_train_follows_dataset_or_model_to_the_train_motion_recipe():
    """task=train dataset=synthetic_motion and task=train model=motion_cnn resolve to exactly the
    config of task=train_motion (model, data set, every task setting); plain task=train stays shapes."""
    from vizlab.tasks.train import RECIPES, check_config, route

    reference = route(compose("task=train_motion"))
    assert reference.model.name == "motion_cnn" and reference.task.model == "motion_cnn"
    assert {k: reference.task[k] for k in MOTION_RECIPE} == MOTION_RECIPE
    assert plain(reference.dataset) == plain(OmegaConf.load(ROOT / "conf" / "dataset" / "synthetic_motion.yaml"))
    for overrides in (["dataset=synthetic_motion"], ["model=motion_cnn"]):
        routed = route(compose("task=train", *overrides))
        assert plain(routed) == plain(reference), overrides
        assert check_config(routed) is RECIPES["motion_cnn"]
    shapes = route(compose("task=train"))
    assert (shapes.model.name, shapes.dataset.name, shapes.task.epochs, shapes.task.num_train) == (
        "shapes_cnn", "synthetic_shapes", 8, 4000)
    tuned = route(compose("task=train", "dataset=synthetic_motion", "task.epochs=2", "task.recipes.motion_cnn.lr=0.01"))
    assert (tuned.task.epochs, tuned.task.lr, tuned.task.batch_size) == (2, 0.01, 32)  # the rest: the recipe


def test_task_train_model_motion_cnn16_trains_on_16_frame_clips():
    """task=train model=motion_cnn16: the synthetic_motion data set (frames null: the model's 16), its
    own recipe; dataset=synthetic_motion alone still picks motion_cnn."""
    from vizlab.tasks.train import RECIPES, check_config, route

    routed = route(compose("task=train", "model=motion_cnn16"))
    assert (routed.model.name, routed.task.model, routed.dataset.name) == ("motion_cnn16", "motion_cnn16",
                                                                            "synthetic_motion")
    assert routed.dataset.frames is None and {k: routed.task[k] for k in MOTION_RECIPE} == MOTION_RECIPE
    recipe = check_config(routed)
    assert recipe is RECIPES["motion_cnn16"] and recipe.info.frames == 16
    clips, labels, masks = recipe.split(4, 0)
    assert clips.shape == (4, 3, 16, 48, 48) and masks.shape == (4, 16, 48, 48)
    assert route(compose("task=train", "dataset=synthetic_motion")).model.name == "motion_cnn"
    with pytest.raises(ConfigError, match="motion_cnn16 is trained on 16-frame clips; got dataset.frames=8"):
        check_config(route(compose("task=train", "model=motion_cnn16", "dataset=synthetic_motion", "dataset.frames=8")))


def test_task_train_rejects_a_model_and_dataset_that_do_not_train_together(hydra_job, tmp_path):
    from vizlab.tasks.train import run_train

    with pytest.raises(ConfigError, match=r"model=shapes_cnn trains on dataset=synthetic_shapes; got "
                                          r"dataset=synthetic_motion\. Give one of them: task=train model=shapes_cnn, "
                                          r"or task=train dataset=synthetic_motion \(trains motion_cnn\)"):
        run_train(compose("task=train", "model=shapes_cnn", "dataset=synthetic_motion", job=True), tmp_path)
    with pytest.raises(ConfigError, match=r"task\.model=motion_cnn \(task=train_motion\) trains motion_cnn; got "
                                          r"model=shapes_cnn\. For shapes_cnn use task=train model=shapes_cnn"):
        run_train(compose("task=train_motion", "model=shapes_cnn", job=True), tmp_path)
    with pytest.raises(ConfigError, match=r"model=motion_cnn trains on dataset=synthetic_motion; got dataset=samples\. "
                                          r"Drop dataset= or set dataset=synthetic_motion"):
        run_train(compose("task=train", "model=motion_cnn", "dataset=samples", job=True), tmp_path)
    assert not any(tmp_path.iterdir())


def test_vizlab_models_names_the_command_that_trains_each_synthetic_model(capsys):
    from vizlab.cli import main
    from vizlab.tasks.train import route

    main(["models"])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for name in ("shapes_cnn", "motion_cnn", "motion_cnn16"):
        command = re.search(r"trained by vizlab \((python run\.py [^)]+)\)", lines[name]).group(1)
        assert route(compose(*command.split()[2:])).model.name == name, command


def test_task_train_on_synthetic_motion_reuses_the_cached_motion_cnn(trained_motion_cnn, synthetic_cache,
                                                                     monkeypatch, tmp_path):
    """With motion_cnn cached (by the session's task=train_motion), task=train dataset=synthetic_motion
    does not train: it copies the cache and scores it on the same 500 validation clips."""
    from vizlab.tasks.train import run_train

    monkeypatch.setenv("VIZLAB_CACHE", str(synthetic_cache))
    results = run_train(compose("task=train", "dataset=synthetic_motion"), tmp_path / "run")
    summary = results["summary"]
    cache = synthetic_cache / "motion_cnn.pt"
    assert not summary["trained"] and summary["checkpoint"] == str(cache) and summary["num_samples"] == 500
    assert summary["val_acc"] == trained_motion_cnn["val_acc"]
    assert (tmp_path / "run" / "motion_cnn.pt").read_bytes() == cache.read_bytes()
    assert results["model"]["name"] == "motion_cnn" and results["model"]["frames"] == 8
    assert {k: results["config"][k] for k in MOTION_RECIPE} == MOTION_RECIPE and results["config"]["model"] == "motion_cnn"
    assert json.loads((tmp_path / "run" / "results.json").read_text())["summary"] == summary


def test_trained_motion_cnn_is_accurate_and_gradcam_points_at_the_moving_object(
        trained_motion_cnn, synthetic_cache, monkeypatch, tmp_path):
    """Default task=train_motion: >= 95% val accuracy. Grad-CAM from the CLI on 100 fresh clips:
    spatio-temporal pointing (the peak over all voxels lies on the object in its frame) >= 0.8."""
    assert trained_motion_cnn["val_acc"] >= 0.95, trained_motion_cnn
    monkeypatch.setenv("VIZLAB_CACHE", str(synthetic_cache))
    model = load_model("motion_cnn")
    assert isinstance(model.net, MotionCNN) and model.info.frames == 8 and model.class_name(2) == "down"

    job = tmp_path / "job"
    proc = run_cli(PYTHON, "run.py", "model=motion_cnn", "dataset=synthetic_motion", "dataset.num_samples=100",
                   "dataset.seed=4242", "method=gradcam", "metric=[pointing_game]", "metric.pointing_game.tolerance=3",
                   "logger=none", "task.save_overlays=false", f"hydra.run.dir={job}", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((job / "results.json").read_text())["summary"]
    assert summary["num_samples"] == 100 and summary["pointing_accuracy"] >= 0.8, summary

    # the same number from Python, with the true class as target
    import vizlab

    batch = next(iter(DataLoader(SyntheticMotion(100, seed=4242), batch_size=100)))
    x = model.normalize(batch["image"])
    with torch.no_grad():
        assert (model(x).argmax(1) == batch["label"]).float().mean() >= 0.9
    saliency = vizlab.explain(model, x, target=batch["label"], method="gradcam")
    assert saliency.shape == (100, 8, 48, 48)
    assert pointing_hits(saliency, batch["mask"], tolerance=TOLERANCE).mean() >= 0.8


@pytest.mark.slow
def test_train_motion_under_ddp_on_two_cpu_processes(tmp_path, monkeypatch):
    """task=train_motion hardware=ddp_cpu: the spawned workers' weights come back and are cached."""
    cache = tmp_path / "cache"
    job = tmp_path / "job"
    monkeypatch.setenv("VIZLAB_CACHE", str(cache))
    proc = run_cli(PYTHON, "run.py", "task=train_motion", "hardware=ddp_cpu", "task.epochs=2", "task.num_train=64",
                   "task.num_val=32", "task.batch_size=8", "logger=none", f"hydra.run.dir={job}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((job / "results.json").read_text())["summary"]
    assert summary["trained"] and summary["num_samples"] == 32
    trained = torch.load(cache / "motion_cnn.pt")
    fresh = MotionCNN().state_dict()
    assert not torch.equal(trained["features.0.0.weight"], fresh["features.0.0.weight"])


@pytest.mark.parametrize("frames", [16, 32])
def test_long_clips_keep_the_object_inside_every_frame(frames):
    """Clips longer than 8 frames move the object more slowly (the same travel as 8 frames), so
    it stays in view (before, 16 frames at 48² failed inside numpy: 'high - low < 0')."""
    from vizlab.data.synthetic_motion import SyntheticMotion

    data = SyntheticMotion(12, frames=frames, seed=3)
    masks = torch.stack([data[i]["mask"] for i in range(12)])
    assert masks.shape == (12, frames, 48, 48) and masks.flatten(2).any(2).all()
