"""task=featvis end to end: the command line, the job directory, results.json, the offline W&B run
read back, and a bad config that exits 2 leaving nothing behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import pytest
from conftest import PYTHON, ROOT, run_cli

from vizlab.loggers import read_offline_run

SMALL = ["task=featvis", "task.size=96", "task.layer=blocks.6", "task.target_channels=16", "task.members=3",
         "task.iterations=12", "task.save_every=6", "task.progress=false",
         "dataset.images=[chelsea,coffee,astronaut,rocket,cat,hubble_deep_field]"]


def test_cli_end_to_end_with_wandb(tmp_path):
    out = tmp_path / "outputs"
    proc = run_cli(PYTHON, "run.py", *SMALL, "logger=wandb", f"paths.output_root={out}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (results_path,) = out.rglob("results.json")
    job = results_path.parent
    assert f"featvis done: 6 samples → {job}" in proc.stdout
    assert "target activation generated / members" in proc.stdout
    results = json.loads(results_path.read_text())
    assert results["task"] == "featvis" and results["complete"] and results["layer"] == "blocks.6"
    assert results["penalty_layer"] == "blocks.6.0.conv_pwl" and results["strict_original"] == []
    assert results["embedding"]["method"] == "tsne" and len(results["embedding"]["points"]) == 6
    summary = results["summary"]
    assert summary["num_samples"] == 6 and summary["clusters"] == 2 and summary["iterations"] == 12
    assert summary["final_loss"] < summary["first_loss"]
    assert len(results["curves"]["loss"]) == 12 and len(results["curves"]["activation"]) == 2
    assert results["curves"]["schedule_lr"][0] == pytest.approx(0.5)
    assert results["curves"]["schedule_lr"][-1] == pytest.approx(0.08)
    for k, cluster in enumerate(results["clusters"]):
        assert len(cluster["channels"]) == 16 and len(cluster["members"]) == 3
        act = cluster["activation"]
        assert act["ratio"] == pytest.approx(act["generated"] / act["members"])
        # one image per cluster per saved iteration (0 = the start image, 6, 12)
        assert cluster["files"] == [f"generated/cluster_{k:02d}/iteration_{i:04d}.png" for i in (0, 6, 12)]
        for rel in cluster["files"]:
            image = cv2.imread(str(job / rel))
            assert image is not None and image.shape == (96, 96, 3)
    strip = cv2.imread(str(job / "iteration_strip.png"))
    assert strip is not None and strip.shape[0] > 2 * 160 and strip.shape[1] > 4 * 160   # 2 rows × (real, start, 6, 12)
    for name in ("embedding", "curves"):
        assert cv2.imread(str(job / f"{name}.png")) is not None
    assert not (job / ".staging").exists()
    # the offline W&B run, read back
    (run_dir,) = (job / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)
    assert run["config"]["task"]["name"] == "featvis" and run["config"]["task"]["clusters"] == 2
    assert run["summary"]["featvis/activation_ratio_mean"] == pytest.approx(summary["activation_ratio_mean"])
    images = [f for f in run["files"] if f.startswith("media/images/")]
    assert len(images) == 2 + 3                                  # the final images and the three figures
    rows = [r for r in run["history"] if "curves/loss" in r]
    assert len(rows) == 12 and rows[-1]["curves/loss"] == pytest.approx(summary["final_loss"], rel=1e-5)
    (table,) = [f for f in run["files"] if f.endswith(".table.json")]
    data = json.loads((run_dir / "files" / table).read_text())
    assert len(data["data"]) == 2 and "ratio" in data["columns"]


def test_bad_config_exits_2_and_leaves_nothing(tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from vizlab.tasks import run_task

    job = tmp_path / "job"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for override, message in (("task.clusters=5", "task.clusters must be an integer in 1..4"),
                                  ("+task.octaves.0.lr=0.1", "unknown key(s) ['lr']"),
                                  ("task.layer=blocks.99", "Layer 'blocks.99' not found")):
            cfg = compose("config", overrides=["task=featvis", "logger=none", "task.size=64", "task.iterations=1",
                                               "task.progress=false",
                                               override])
            job.mkdir(exist_ok=True)
            with pytest.raises(SystemExit) as exc:
                cwd = os.getcwd()
                os.chdir(job)
                try:
                    run_task(cfg)
                finally:
                    os.chdir(cwd)
            assert exc.value.code == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and message in err[0], err
            assert not any(Path(job).iterdir())


def test_image_folder_with_chained_octaves(tmp_path):
    """dataset=image_folder (PNGs written here into two class folders) and a list of two octaves from
    the command-line syntax: the second continues the global count (1 … 5) and runs its own schedule;
    a snapshot per cluster at every saved iteration of both octaves."""
    from hydra import compose, initialize_config_dir
    from skimage import data

    from vizlab.tasks.featvis import run_featvis
    from vizlab.viz.overlay import save_png

    root = tmp_path / "images"
    photos = {"animals": ("chelsea", "cat", "astronaut"), "things": ("coffee", "rocket", "hubble_deep_field")}
    for folder, names in photos.items():
        for name in names:
            save_png(root / folder / f"{name}.png", cv2.resize(getattr(data, name)(), (80, 80)))
    octaves = ("[{scale: 1.2, iterations: 3, window_step: 2},"
               " {scale: 1.0, start_lr: 0.2, end_lr: 0.1, start_sigma: 0.5, end_sigma: 0.5, iterations: 2}]")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=featvis", "logger=none", "dataset=image_folder",
                                           f"dataset.root={root}", "task.size=64", "task.layer=blocks.6",
                                           "task.target_channels=8", "task.members=2", "task.save_every=2",
                                           "task.progress=false", f"task.octaves={octaves}"])
    job = tmp_path / "job"
    job.mkdir()
    results = run_featvis(cfg, job)
    assert results["embedding"]["names"] == ["animals/astronaut", "animals/cat", "animals/chelsea",
                                             "things/coffee", "things/hubble_deep_field", "things/rocket"]
    curves = results["curves"]
    assert curves["iteration"] == [1, 2, 3, 4, 5]
    assert curves["schedule_lr"] == pytest.approx([0.5, 0.29, 0.08, 0.2, 0.1])
    assert curves["schedule_sigma"] == pytest.approx([0.9, 0.55, 0.2, 0.5, 0.5])
    assert [o["scale"] for o in results["octaves"]] == [1.2, 1.0]
    for k, cluster in enumerate(results["clusters"]):
        assert cluster["files"] == [f"generated/cluster_{k:02d}/iteration_{i:04d}.png" for i in (0, 2, 4, 5)]
        assert all((job / rel).is_file() for rel in cluster["files"])
        assert all(m["name"] in results["embedding"]["names"] for m in cluster["members"])
    assert results["summary"]["iterations"] == 5 and (job / "results.json").is_file()
