"""Multi-node DDP under SLURM, simulated on this machine: two processes started the way srun starts
them (two "nodes" of one task each, gloo) give the single-process results; submitit's local
executor runs the same job path; the launcher config follows hardware=slurm."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, run_cli, synthetic_model
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vizlab.errors import ConfigError
from vizlab.lit import hardware as hw

JOB = ["model=shapes_cnn", "dataset=synthetic_shapes", "dataset.num_samples=5", "task.batch_size=2",
       "metric=[deletion_insertion,pointing_game,mask_iou]", "metric.deletion_insertion.steps=8", "logger=none"]
SLURM_VARS = ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES", "SLURM_PROCID", "SLURM_LOCALID",
              "SLURM_NODEID", "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_STEP_ID", "SLURM_NODELIST",
              "MASTER_ADDR", "MASTER_PORT", "SUBMITIT_EXECUTOR")


@pytest.fixture
def no_cluster(monkeypatch):
    for name in SLURM_VARS:
        monkeypatch.delenv(name, raising=False)


def srun_env(rank: int, nodes: int, job_id: str, port: int) -> dict[str, str]:
    """What srun --nodes=<nodes> --ntasks-per-node=1 gives task `rank` (one task per node)."""
    return {"SLURM_NTASKS": str(nodes), "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": str(nodes),
            "SLURM_PROCID": str(rank), "SLURM_LOCALID": "0", "SLURM_NODEID": str(rank), "SLURM_JOB_ID": job_id,
            "SLURM_JOB_NAME": "vizlab-test", "SLURM_STEP_ID": "0", "SLURM_NODELIST": "node[1-2]",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose_job(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def assert_same_results(multi: dict, single: dict, n: int) -> None:
    assert [s["index"] for s in multi["samples"]] == list(range(n))  # every sample exactly once
    for a, b in zip(multi["samples"], single["samples"], strict=True):
        assert a["name"] == b["name"] and a["target"] == b["target"]
        for key, value in b["metrics"].items():
            assert a["metrics"][key] == pytest.approx(value, abs=1e-5), key
    for key in ("deletion_auc", "insertion_auc", "pointing_accuracy", "mask_iou"):
        assert multi["summary"][key] == pytest.approx(single["summary"][key], abs=1e-5), key


def test_launcher_follows_hardware(no_cluster):
    cfg = compose_job("hardware=slurm", "hydra/launcher=slurm", "hardware.num_nodes=3", "hardware.devices=8",
                      "hardware.partition=gpu", "hardware.timeout_min=90", hydra=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (3, 8, 8)
    assert (launcher["timeout_min"], launcher["partition"], launcher["cpus_per_task"]) == (90, "gpu", 8)
    plugin = instantiate(cfg.hydra.launcher)  # the real submitit launcher, as Hydra builds it
    assert type(plugin).__name__ == "SlurmLauncher" and plugin.params["nodes"] == 3
    assert plugin.params["gpus_per_node"] == 8 and plugin.params["tasks_per_node"] == 8
    cpu = compose_job("hardware=slurm", "hydra/launcher=slurm_local", "hardware.accelerator=cpu",
                      "hardware.num_nodes=1", "hardware.devices=2", hydra=True)
    local = OmegaConf.to_container(cpu.hydra.launcher, resolve=True)
    assert (local["tasks_per_node"], local["gpus_per_node"], local["nodes"]) == (2, 0, 1)
    assert type(instantiate(cpu.hydra.launcher)).__name__ == "LocalLauncher"
    kwargs = hw.trainer_devices(compose_job("hardware=slurm", "hardware.num_nodes=1", "hardware.devices=1").hardware)
    assert kwargs["strategy"] == "ddp" and kwargs["num_nodes"] == 1 and "plugins" not in kwargs


def test_ddp_needs_a_launcher_and_matching_tasks(no_cluster, monkeypatch):
    slurm = compose_job("hardware=slurm", "hardware.accelerator=cpu", "hardware.num_nodes=2",
                        "hardware.devices=1").hardware
    with pytest.raises(ConfigError, match=r"needs one process per rank started by SLURM: run it with `srun"):
        hw.trainer_devices(slurm)
    from vizlab.tasks.common import trainer_hardware

    for name, value in srun_env(1, 3, "77", 12345).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=r"started 3 task\(s\) but the hardware config asks for "
                                          r"hardware.num_nodes=2 × hardware.devices=1 = 2"):
        hw.trainer_devices(slurm)
    with pytest.raises(ConfigError, match="Only task=explain runs across SLURM ranks"):
        trainer_hardware(slurm)
    three = compose_job("hardware=slurm", "hardware.accelerator=cpu", "hardware.num_nodes=3",
                        "hardware.devices=1").hardware
    env = hw.trainer_devices(three)["plugins"][0]  # Lightning's own SLURM environment reads the task's place
    assert type(env).__name__ == "SLURMEnvironment"
    assert (env.world_size(), env.global_rank(), env.node_rank(), env.local_rank()) == (3, 1, 1, 0)
    assert (env.main_address, env.main_port) == ("127.0.0.1", 12345)
    assert hw.launch_rank(three) == 1
    assert hw.run_stamp() == "slurm-77.0"  # every task of the step agrees on one run directory


def test_two_simulated_slurm_nodes_match_one_process(tmp_path, request, monkeypatch, no_cluster):
    """srun --nodes=2 --ntasks-per-node=1 python run.py hardware=slurm ..., simulated: two processes with
    SLURM's variables, gloo over loopback. Rank 0 writes one results.json in the shared run directory
    (slurm-<job>.<step>), with every sample once and the single-process numbers."""
    from vizlab.tasks.explain import run_explain

    synthetic_model(request, monkeypatch, "shapes_cnn")
    out, port = tmp_path / "out", free_port()
    args = [PYTHON, "run.py", *JOB, "hardware=slurm", "hardware.accelerator=cpu", "hardware.devices=1",
            "hardware.num_nodes=2", "hardware.threads=1", f"paths.output_root={out}"]
    base = dict(os.environ, PYTHONUNBUFFERED="1", PATH=f"{Path(PYTHON).parent}:{os.environ['PATH']}")
    procs = [subprocess.Popen(args, cwd=ROOT, env={**base, **srun_env(rank, 2, "4242", port)}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for rank in (0, 1)]
    logs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, logs, strict=True):
        assert p.returncode == 0, err[-4000:]
    assert "rank 1 done: 2 samples" in logs[1][0] and "explain done: 5 samples" in logs[0][0]
    (path,) = out.rglob("results.json")
    assert path.parent == out / "explain" / "slurm-4242.0"
    multi = json.loads(path.read_text())
    assert len(list((path.parent / "heatmaps").glob("*.png"))) == 5 and not (path.parent / ".staging").exists()
    single = run_explain(compose_job(*JOB, "hardware=cpu", "hardware.threads=1"), tmp_path / "single")
    assert_same_results(multi, single, 5)
    assert multi["hardware"]["num_nodes"] == 2 and multi["hardware"]["strategy"] == "ddp"


@pytest.mark.slow
def test_submitit_local_executor_runs_the_ddp_job(tmp_path, request, monkeypatch, no_cluster):
    """hydra/launcher=slurm_local: submitit's local executor starts hardware.devices tasks, each one rank
    (SubmititLocalEnvironment), through the same Hydra → submitit → run_task path as on SLURM."""
    from vizlab.tasks.explain import run_explain

    synthetic_model(request, monkeypatch, "shapes_cnn")
    sweep = tmp_path / "sweep"
    proc = run_cli(PYTHON, "run.py", "-m", *JOB, "hydra/launcher=slurm_local", "hardware=slurm",
                   "hardware.accelerator=cpu", "hardware.num_nodes=1", "hardware.devices=2", "hardware.threads=1",
                   "hardware.timeout_min=10", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=job", timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (path,) = sweep.rglob("results.json")
    logs = "".join(p.read_text() for p in sweep.rglob(".submitit/*/*_log.out"))
    assert "rank 1 done" in logs and "explain done: 5 samples" in logs  # both tasks ran the job
    single = run_explain(compose_job(*JOB, "hardware=cpu", "hardware.threads=1"), tmp_path / "single")
    assert_same_results(json.loads(path.read_text()), single, 5)
