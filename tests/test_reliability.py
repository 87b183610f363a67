"""Reliability and first contact (issue 15): sweeps that survive bad jobs, one line per failure,
Ctrl-C, W&B without a network, file modes, the Python API's input errors, quiet progress bars,
and an installable wheel. Command-line behaviour is tested on real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import PYTHON, ROOT, run_cli

from vizlab.errors import ConfigError, InputError, VizlabError

ONE_IMAGE = ["dataset.images=[chelsea]", "metric=none", "logger=none", "method=cam"]


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


# ----------------------------------------------------------------------------- 1, 6: sweeps and re-runs


def test_sweep_survives_a_bad_job_and_a_failed_rerun_keeps_the_finished_config(tmp_path):
    """A real sweep whose job 0 has a bad target: job 1 still runs; job 0 records failed.json next
    to its .hydra/; the sweep ends with a summary and exit status 2; the report lists the failure.
    Then a failing re-run into the finished job 1 leaves its config and results untouched."""
    sweep = tmp_path / "sweep"
    proc = run_cli(PYTHON, "run.py", "-m", "task.target=5000,285", *ONE_IMAGE, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "vizlab: sweep: 2 jobs: 1 done, 0 skipped as complete, 1 failed" in proc.stdout
    (failed_line,) = [x for x in proc.stderr.splitlines() if x.startswith("vizlab: failed job 0")]
    assert "task.target=5000 is out of range" in failed_line
    bad, good = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    failed = json.loads((bad / "failed.json").read_text())
    assert failed["type"] == "ConfigError" and "task.target=5000 is out of range" in failed["error"]
    assert "task.target=5000" in failed["overrides"] and "traceback" not in failed
    assert sorted(p.name for p in bad.iterdir()) == [".hydra", "failed.json", "run.log"]
    results = json.loads((good / "results.json").read_text())
    assert results["complete"] and results["samples"][0]["target"] == 285
    # files get the umask's mode like any other file (not mkstemp's 0600)
    mode = 0o666 & ~current_umask()
    png = next((good / "heatmaps").iterdir())
    assert (good / "results.json").stat().st_mode & 0o777 == mode and png.stat().st_mode & 0o777 == mode

    from vizlab.viz.report import build_report

    report = build_report(sweep)
    assert [f["job"] for f in report["summary"]["failed"]] == [bad.name]
    md = (sweep / "report.md").read_text()
    assert "## Failed jobs" in md and "task.target=5000 is out of range" in md and "1 failed" in md

    config = {p.name: p.read_bytes() for p in (good / ".hydra").iterdir()}
    before = {p: p.stat().st_mtime_ns for p in good.rglob("*") if p.is_file() and p.name != "run.log"}
    rerun = run_cli(PYTHON, "run.py", "task.target=5000", *ONE_IMAGE, f"hydra.run.dir='{good}'")  # quoted: = [ ,
    assert rerun.returncode == 2 and rerun.stderr.strip().startswith("vizlab: error: task.target=5000")
    assert {p.name: p.read_bytes() for p in (good / ".hydra").iterdir()} == config
    assert {p: p.stat().st_mtime_ns for p in good.rglob("*") if p.is_file() and p.name != "run.log"} == before
    assert not (good / ".hydra-pending").exists() and not (good / "failed.json").exists()


def current_umask() -> int:
    from vizlab.io import current_umask

    return current_umask()


def test_sweep_summary_counts_outcomes_and_sets_the_exit_status(tmp_path, capsys):
    """The end-of-sweep summary from the recorded outcomes: exit 2 when only bad config failed, 1
    when a job crashed, no exit when everything ran."""
    from omegaconf import OmegaConf

    from vizlab.sweep import JOBS, SweepSummary

    def summary(*records: dict) -> int | None:
        shutil.rmtree(tmp_path / JOBS, ignore_errors=True)
        (tmp_path / JOBS).mkdir()
        for i, r in enumerate(records):
            (tmp_path / JOBS / f"{i}.json").write_text(json.dumps({"job": i, "overrides": [f"x={i}"], **r}))
        config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
        try:
            SweepSummary().on_multirun_end(config)
        except SystemExit as exc:
            return exc.code
        return None

    done, skipped = {"status": "done"}, {"status": "skipped"}
    bad = {"status": "failed", "error": "task.target=5000 is out of range", "bad_input": True}
    crash = {"status": "failed", "error": "CUDA out of memory", "bad_input": False}
    assert summary(done, skipped) is None
    assert "2 jobs: 1 done, 1 skipped as complete, 0 failed" in capsys.readouterr().out
    assert summary(done, bad, skipped) == 2
    out = capsys.readouterr()
    assert "3 jobs: 1 done, 1 skipped as complete, 1 failed" in out.out
    assert "vizlab: failed job 1 (x=1): task.target=5000 is out of range" in out.err
    assert summary(bad, crash) == 1


@pytest.mark.parametrize("with_results", [False, True])
def test_failed_rerun_of_a_job_replaces_its_config_only_without_results(tmp_path, capsys, with_results):
    """A job directory that failed before is re-run and fails again: without results its .hydra/
    becomes this attempt's config (and failed.json this attempt's error); next to complete results
    the old .hydra/ stays, since it describes them."""
    from omegaconf import OmegaConf

    from vizlab.tasks.runner import FAILED, HYDRA, PENDING, Job, failed

    job_dir = tmp_path / "0_task.target=5000"
    (job_dir / HYDRA).mkdir(parents=True)
    (job_dir / HYDRA / "config.yaml").write_text("old attempt\n")
    (job_dir / "run.log").write_text("")
    (job_dir / FAILED).write_text(json.dumps({"error": "old error"}))
    if with_results:
        (job_dir / "results.json").write_text(json.dumps({"complete": True}))
    before = {p.name for p in job_dir.iterdir()}
    (job_dir / PENDING).mkdir()  # what Hydra writes for the new attempt
    (job_dir / PENDING / "config.yaml").write_text("new attempt\n")
    (job_dir / "partial.png").write_text("")  # something the failing attempt wrote
    cfg = OmegaConf.create({"task": {"name": "explain"}, "paths": {"output_root": str(tmp_path)}})
    job = Job(job_dir, "run", multirun=True, num=0, overrides=["task.target=5000"])
    outcome = failed(cfg, job, job_dir, before, ConfigError("task.target=5000 is out of range"))
    assert outcome["status"] == "failed" and outcome["bad_input"]
    assert (job_dir / HYDRA / "config.yaml").read_text() == ("old attempt\n" if with_results else "new attempt\n")
    assert not (job_dir / PENDING).exists() and not (job_dir / "partial.png").exists()
    assert json.loads((job_dir / FAILED).read_text())["error"] == "task.target=5000 is out of range"
    assert (job_dir / "results.json").exists() == with_results
    assert "(job 0 failed:" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]])
def test_sweep_survives_a_bad_job_with_other_launchers(tmp_path, launcher):
    """The same with the joblib and submitit launchers (jobs in other processes), then a re-run of
    the same sweep: the finished job is skipped, the bad one fails again."""
    sweep = tmp_path / "sweep"
    args = [PYTHON, "run.py", "-m", "task.target=5000,285", *ONE_IMAGE, *launcher, f"hydra.sweep.dir={sweep}"]
    proc = run_cli(*args, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "vizlab: sweep: 2 jobs: 1 done, 0 skipped as complete, 1 failed" in proc.stdout
    assert len(list(sweep.glob("*/failed.json"))) == 1 and len(list(sweep.glob("*/results.json"))) == 1
    again = run_cli(*args, timeout=600)
    assert again.returncode == 2
    assert "vizlab: sweep: 2 jobs: 0 done, 1 skipped as complete, 1 failed" in again.stdout


# ----------------------------------------------------------------------------- 7: Ctrl-C


def interrupt(tmp_path: Path, ready, *overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Start `python run.py`, send SIGINT once `ready(output root)` is true, return the finished process."""
    out = tmp_path / "outputs"
    env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0")
    proc = subprocess.Popen([PYTHON, "run.py", *overrides, f"paths.output_root={out}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not ready(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), out


def test_ctrl_c_in_the_loop_cleans_up_and_exits_130(tmp_path):
    """SIGINT while batches are being explained (Lightning turns it into exit 1): status 130, one
    line, no traceback, and nothing of the run left on disk."""
    slow = ["dataset.images=[chelsea,coffee,astronaut,rocket,cat,hubble_deep_field]", "task.batch_size=1",
            "method=smoothgrad", "method.n_samples=16", "metric=none", "logger=none"]
    proc, out = interrupt(tmp_path, lambda out: any(out.rglob(".staging/heatmaps/*.png")), *slow)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stdout + proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("vizlab:")]
    assert line.startswith("vizlab: interrupted; removed this run's partial outputs")
    assert tree(out) == []


@pytest.mark.slow
def test_ctrl_c_during_start_up_cleans_up_and_exits_130(tmp_path):
    """SIGINT as soon as Hydra has created the job directory (model and data still loading)."""
    proc, out = interrupt(tmp_path, lambda out: any(out.rglob("run.log")), *ONE_IMAGE)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("vizlab: interrupted")
    assert tree(out) == []


# ----------------------------------------------------------------------------- 2: W&B without a network


def test_wandb_online_without_network_falls_back_to_offline(tmp_path):
    """An API key but no reachable server (a host name that cannot resolve): after logger.init_timeout
    seconds one warning line, then the run completes and logs offline, readable from disk."""
    from vizlab.loggers import read_offline_run

    env = {"WANDB_API_KEY": "a" * 40, "WANDB_BASE_URL": "http://vizlab-no-network.invalid", "WANDB_MODE": None}
    start = time.monotonic()
    proc = run_with_env(env, "run.py", "dataset.images=[chelsea]", "metric=none", "method=cam", "logger=wandb",
                        "logger.init_timeout=2", f"hydra.run.dir={tmp_path / 'job'}")
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seconds < 80  # W&B's own default waits 90 s per attempt
    warnings = [x for x in proc.stderr.splitlines() if "W&B" in x or "wandb" in x.lower()]
    assert len(warnings) == 1 and warnings[0].startswith("vizlab: warning: W&B did not start an online run within 2 s")
    assert "Traceback" not in proc.stderr
    (run_dir,) = (tmp_path / "job" / "wandb").glob("offline-run-*")
    assert read_offline_run(run_dir)["config"]["method"]["name"] == "cam"
    assert "W&B run (offline):" in proc.stdout


def run_with_env(env: dict[str, str | None], *args: str) -> subprocess.CompletedProcess:
    """`python args...` in the source tree with `env` on top of os.environ (None: unset)."""
    full = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0")
    full.update({k: v for k, v in env.items() if v is not None})
    for key in [k for k, v in env.items() if v is None]:
        full.pop(key, None)
    return subprocess.run([PYTHON, *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------- 4: Hydra's errors


@pytest.mark.parametrize(("overrides", "message"), [
    (["model=resnet5"], "Unknown model=resnet5. Did you mean: 'resnet50', 'resnet18'"),
    (["metric=[deletion_insrtion]"], "Unknown metric=deletion_insrtion. Did you mean: 'deletion_insertion'"),
    (["dataset=imagefolder"], "Unknown dataset=imagefolder. Did you mean: 'image_folder'"),
    (["method=gradcm"], "Unknown method=gradcm. Did you mean: 'gradcam'"),
    (["hydra/launcher=jobib"], "Unknown hydra/launcher=jobib. Did you mean: 'joblib'?"),
    (["method.layr=bn2"], "Unknown option 'method.layr'. Did you mean: 'method.layer'? Valid options of method: "
                          "layer, name, temporal."),
    (["modle=resnet18"], "Unknown option 'modle'. Did you mean: 'model'"),
    (["task.target=[1,"], "Cannot parse the override 'task.target=[1,'"),
])
def test_hydra_errors_become_one_vizlab_line(overrides, message):
    """Hydra's composition and override errors (as the entry point sees them) → one line with the
    valid choices and a did-you-mean; never Hydra's hint to append the typo."""
    from hydra import compose, initialize_config_dir

    from vizlab.entry import conf_dir, hydra_error_message, is_config_problem

    with pytest.raises(Exception) as err, initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        compose("config", overrides=overrides, return_hydra_config=True)
    assert is_config_problem(err.value)
    line = hydra_error_message(err.value, conf_dir())
    assert message in line and "\n" not in line and "append" not in line and "+" not in line


# ----------------------------------------------------------------------------- 3, 9: one clear error each


def test_python_api_refuses_bad_targets_layers_and_inputs(effnet, sample_batch, tiny2d):
    import vizlab

    x = sample_batch[:1]
    bad = {
        "float target": (lambda: vizlab.explain(effnet, x, target=2.7), InputError, "got 2.7 (float)"),
        "str target": (lambda: vizlab.explain(effnet, x, target="285"), InputError, "got '285' (str)"),
        "float tensor target": (lambda: vizlab.explain(effnet, x, target=torch.tensor([2.7])), InputError,
                                "torch.float32 tensor"),
        "int layer": (lambda: vizlab.methods.build("gradcam", effnet, layer=3), InputError, "got 3 (int)"),
        "empty batch": (lambda: vizlab.explain(effnet, x[:0]), InputError, "Input is empty"),
        "dtype": (lambda: vizlab.explain(effnet, x.double()), InputError, "torch.float64 but the model's weights"),
        "too small": (lambda: vizlab.explain(effnet, x[..., :16, :16], method="gradients"), InputError,
                      "too small for efficientnet_lite0"),
        "1x1 CAM map": (lambda: vizlab.explain(effnet, x[..., :32, :32]), InputError, "feature map is 1×1"),
        "string option": (lambda: vizlab.explain(effnet, x, method="integrated_gradients", steps="abc"),
                          ConfigError, "method.steps must be an integer; got 'abc' (str)"),
        "float option": (lambda: vizlab.methods.build("smoothgrad", effnet, n_samples=2.5), ConfigError,
                         "method.n_samples must be an integer; got 2.5"),
    }
    for name, (call, kind, message) in bad.items():
        with pytest.raises(kind, match=None) as err:
            call()
        assert message in str(err.value), (name, str(err.value))
    # a plain network without zoo metadata: a kernel larger than the input is an InputError too
    with pytest.raises(InputError, match="too small for this network"):
        vizlab.explain(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5), torch.nn.AdaptiveAvgPool2d(1),
                                           torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval(),
                       torch.rand(1, 3, 3, 3), method="gradients")
    # what stays valid: ints, per-sample lists, integer tensors and numpy integers
    assert vizlab.explain(effnet, x, target=285).shape == (1, 224, 224)
    assert vizlab.explain(tiny2d, torch.rand(2, 3, 16, 16), target=[1, 2], method="gradients").shape == (2, 16, 16)
    import numpy as np

    assert vizlab.explain(effnet, x, target=torch.tensor([285])).shape == vizlab.explain(
        effnet, x, target=np.int64(285)).shape


def test_validation_helpers():
    from typing import Literal

    from vizlab.validation import check_config, check_number, check_type

    assert check_number("a", 3, low=1, integer=True) == 3 and check_number("a", None, optional=True) is None
    for value in (0, 2.0, True, "3", float("nan")):
        with pytest.raises(ConfigError, match="a must be an integer >= 1"):
            check_number("a", value, low=1, integer=True)
    with pytest.raises(ConfigError, match=r"b must be a number > 0 and <= 1; got 0"):
        check_number("b", 0, low=0, high=1, low_open=True)
    assert check_type("c", [0.1, 2], float | list[float]) == [0.1, 2]
    for value, hint in (("x", int), (1.5, int), ([1, "a"], list[int]), ("up", Literal["pos", "neg"])):
        with pytest.raises(ConfigError):
            check_type("c", value, hint)
    check_config({"task": {"batch_size": 2, "max_samples": None, "target": "label"}, "model": {"num_classes": None}})
    with pytest.raises(ConfigError, match="hardware.devices must be -1"):
        check_config({"hardware": {"devices": 0}})


def test_model_num_classes_zero_is_refused_not_replaced():
    from vizlab.models import load_model

    with pytest.raises(ConfigError, match="model.num_classes must be an integer >= 1 or null; got 0"):
        load_model("resnet18", num_classes=0)
    with pytest.raises(VizlabError):
        load_model("resnet18", num_classes=2.5)


# ----------------------------------------------------------------------------- 8: file modes


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_writes_use_the_umask(tmp_path, umask):
    import numpy as np

    from vizlab.io import write_json_atomic
    from vizlab.viz.overlay import save_mp4, save_png

    old = os.umask(umask)
    try:
        written = [write_json_atomic(tmp_path / "results.json", {"a": 1}),
                   save_png(tmp_path / "h.png", np.zeros((8, 8, 3), np.uint8)),
                   save_mp4(tmp_path / "h.mp4", [np.zeros((16, 16, 3), np.uint8)] * 2)]
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in written] == [0o666 & ~umask] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.mp4", "h.png", "results.json"]  # no temp files left


# ----------------------------------------------------------------------------- 10: progress bars in files


def test_progress_bar_written_to_a_file_updates_every_few_seconds(monkeypatch):
    import io

    from vizlab.progress import FILE_INTERVAL, progress_bar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    log, tty = io.StringIO(), Terminal()
    for stream in (log, tty):
        bar = progress_bar(total=300, file=stream, desc="extremal")
        for _ in range(300):
            time.sleep(0.002)
            bar.update()
        bar.close()
    assert FILE_INTERVAL >= 2
    assert log.getvalue().count("\r") <= 3 and "300/300" in log.getvalue()  # start, (maybe one), end
    assert tty.getvalue().count("\r") > 3  # a terminal keeps its live bar


# ----------------------------------------------------------------------------- 11: the wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the source tree (pip wheel, no build isolation, nothing downloaded)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("vizlab", "conf"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "setup.cfg", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("vizlab-*.whl")
    return path


def test_wheel_ships_the_configs_inside_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "conf").rglob("*.yaml"))
    assert {f"vizlab/{p}" for p in conf} <= names  # every config, as vizlab/conf/...
    assert "vizlab/conf/config.yaml" in names and "vizlab/conf/model/efficientnet_lite0.yaml" in names
    assert not any(n.startswith("conf/") for n in names) and "vizlab/entry.py" in names


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_runs_from_any_directory(wheel, tmp_path):
    """Only the vizlab wheel goes into a new venv (its dependencies come from this venv's
    site-packages through a .pth file); `vizlab` then explains an image from an unrelated folder."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = subprocess.run([PYTHON, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "vizlab-deps.pth").write_text(deps + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the source tree on the path
    # --ignore-installed: the dependency folder also holds this checkout's (editable) vizlab; never touch it
    install = subprocess.run([PYTHON, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                              "--ignore-installed", "-q", str(wheel)], env=env, capture_output=True, text=True,
                             timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([python, "-c", "import vizlab.entry as e; print(e.__file__); print(e.conf_dir())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr[-3000:]
    module, conf = where.stdout.split()
    assert module.startswith(site) and conf == str(Path(site) / "vizlab" / "conf")
    proc = subprocess.run([venv / "bin" / "vizlab", *ONE_IMAGE, "paths.output_root=out"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results,) = (elsewhere / "out").rglob("results.json")
    assert json.loads(results.read_text())["summary"]["num_samples"] == 1


def test_after_ctrl_c_a_half_built_object_does_not_print_a_traceback():
    """An interrupt that cuts an `__init__` short (CI saw imageio's Pillow reader) leaves an object
    whose `__del__` fails; before Ctrl-C Python reports that, after it vizlab's one line stays alone."""
    script = """
import gc, os, signal, sys
from vizlab import interrupts

class HalfBuilt:
    def __del__(self):
        self.never_set

HalfBuilt(); gc.collect()              # before the interrupt: reported as usual
interrupts.install()
try:
    os.kill(os.getpid(), signal.SIGINT)
except KeyboardInterrupt:
    pass
HalfBuilt(); gc.collect()              # after it: dropped
print("interrupted:", interrupts.was_interrupted(), file=sys.stderr)
"""
    proc = subprocess.run([PYTHON, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("Exception ignored") == 1 and proc.stderr.count("never_set") == 1, proc.stderr
    assert proc.stderr.rstrip().endswith("interrupted: True")
