"""The Lightning explain loop: DDP on two CPU processes, W&B/CSV/TensorBoard logging, sweeps with
launchers, skipping completed jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PYTHON, run_cli

from vizlab.loggers import read_offline_run

IMAGES = "dataset.images=[chelsea,coffee,astronaut]"
FAST = [IMAGES, "metric.deletion_insertion.steps=8"]


def run_job(out: Path, *overrides: str, fast: list[str] = FAST) -> dict:
    proc = run_cli(PYTHON, "run.py", *fast, *overrides, f"paths.output_root={out}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (path,) = out.rglob("results.json")
    return json.loads(path.read_text()) | {"_dir": str(path.parent)}


def test_ddp_cpu_matches_single_process_and_logs_to_wandb(tmp_path):
    ddp = run_job(tmp_path / "ddp", "hardware=ddp_cpu", "logger=wandb")
    single = run_job(tmp_path / "single", "hardware=cpu", "hardware.threads=1", "logger=none")
    # every sample exactly once, from both ranks
    assert [s["index"] for s in ddp["samples"]] == [0, 1, 2]
    assert ddp["hardware"]["devices"] == 2
    for a, b in zip(ddp["samples"], single["samples"], strict=True):
        assert a["name"] == b["name"] and a["target"] == b["target"]
        for key in ("deletion_auc", "insertion_auc"):
            assert a["metrics"][key] == pytest.approx(b["metrics"][key], abs=1e-4)
    for key in ("deletion_auc", "insertion_auc"):
        assert ddp["summary"][key] == pytest.approx(single["summary"][key], abs=1e-4)
        mean = sum(s["metrics"][key] for s in ddp["samples"]) / 3
        assert ddp["summary"][key] == pytest.approx(mean, abs=1e-6)  # synced metric = mean of all samples
    # the offline W&B run, read back from its .wandb file
    (run_dir,) = Path(ddp["_dir"]).glob("wandb/offline-run-*")
    run = read_offline_run(run_dir)
    assert run["summary"]["test/deletion_auc"] == pytest.approx(ddp["summary"]["deletion_auc"], abs=1e-6)
    assert run["summary"]["heatmaps/count"] == 3
    assert run["config"]["method"]["name"] == "gradcam" and run["config"]["hardware"]["devices"] == 2
    assert len([f for f in run["files"] if f.startswith("media/images/")]) == 3
    (table,) = [f for f in run["files"] if f.endswith(".table.json")]
    rows = json.loads((run_dir / "files" / table).read_text())
    assert len(rows["data"]) == 3 and "deletion_auc" in rows["columns"]


def test_csv_and_tensorboard_loggers(tmp_path):
    csv = run_job(tmp_path / "csv", "logger=csv", "method=cam")
    metrics = (Path(csv["_dir"]) / "csv" / "metrics.csv").read_text()
    assert "test/deletion_auc" in metrics.splitlines()[0]
    tb = run_job(tmp_path / "tb", "logger=tensorboard", "method=cam", "metric=none", fast=[IMAGES])
    assert list((Path(tb["_dir"]) / "tensorboard").glob("events.out.tfevents.*"))
    assert "deletion_auc" not in tb["summary"]


def test_sweep_with_joblib_launcher_skips_completed_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    args = [PYTHON, "run.py", "-m", "method=cam,gradcam", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            "logger=none", *FAST, f"hydra.sweep.dir={sweep}"]
    first = run_cli(*args, timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    results = sorted(sweep.rglob("results.json"))
    assert len(results) == 2
    stamps = [p.stat().st_mtime_ns for p in results]
    again = run_cli(*args, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stdout.count("skipping") == 2
    assert [p.stat().st_mtime_ns for p in results] == stamps


def test_submitit_local_launcher(tmp_path):
    sweep = tmp_path / "slurm"
    proc = run_cli(PYTHON, "run.py", "-m", "method=cam", "hydra/launcher=submitit_local", "logger=none",
                   "hydra.launcher.timeout_min=10", *FAST, f"hydra.sweep.dir={sweep}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (path,) = sweep.rglob("results.json")
    assert json.loads(path.read_text())["summary"]["num_samples"] == 3
    assert list(sweep.rglob("*_submitted.pkl"))  # really went through submitit


def test_localisation_metric_needs_masks(tmp_path):
    proc = run_cli(PYTHON, "run.py", "metric=[pointing_game]", "logger=none", f"paths.output_root={tmp_path}")
    assert proc.returncode == 2
    assert "needs ground-truth object masks" in proc.stderr
    assert not any(tmp_path.rglob("*"))
