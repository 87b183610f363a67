"""The hardware config → Lightning: devices, nodes, who starts the processes, fast mode.

Three ways a job gets several processes:
  * `strategy: ddp_spawn` (hardware=ddp_cpu, multi_gpu): Lightning spawns them on one machine;
  * `strategy: ddp` under SLURM (hardware=slurm, run by `srun` or `hydra/launcher=slurm`): SLURM
    starts one task per device on every node; each task is one rank and Lightning's
    `SLURMEnvironment` reads its place from SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID, SLURM_NTASKS
    (address and port: MASTER_ADDR / MASTER_PORT, else the first node of SLURM_NODELIST and a port
    derived from SLURM_JOB_ID). Nothing is re-launched, so Hydra's run directory stays the one the
    task was started with;
  * `strategy: ddp` under submitit's local executor (hydra/launcher=slurm_local): submitit starts the
    tasks on this machine; `SubmititLocalEnvironment` reads their place from submitit.

`strategy: ddp` with more than one rank and neither launcher is refused with a ConfigError (Lightning
would otherwise re-launch the script itself, which breaks Hydra multiruns, or wait for nodes that
never come).
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment

from vizlab.errors import ConfigError
from vizlab.fast_mode import FastMode, accelerate, restore, status


class SubmititLocalEnvironment(ClusterEnvironment):
    """The tasks of one submitit LocalExecutor job (one node) as DDP ranks; address 127.0.0.1 and the
    port submitit's TorchDistributedEnvironment derives from the job id (or MASTER_PORT)."""

    def __init__(self) -> None:
        super().__init__()
        from submitit.helpers import TorchDistributedEnvironment

        env = TorchDistributedEnvironment()
        self._rank, self._world, self._local = env.rank, env.world_size, env.local_rank
        self._port = env.master_port

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return os.environ.get("MASTER_ADDR", "127.0.0.1")

    @property
    def main_port(self) -> int:
        return self._port

    @staticmethod
    def detect() -> bool:
        return os.environ.get("SUBMITIT_EXECUTOR") == "local"

    def world_size(self) -> int:
        return self._world

    def set_world_size(self, size: int) -> None:
        pass  # fixed by submitit

    def global_rank(self) -> int:
        return self._rank

    def set_global_rank(self, rank: int) -> None:
        pass  # fixed by submitit

    def local_rank(self) -> int:
        return self._local

    def node_rank(self) -> int:
        return 0


def external_environment() -> ClusterEnvironment | None:
    """The cluster environment of processes started from outside (srun tasks, submitit local tasks),
    or None in a plain process."""
    if SLURMEnvironment.detect():
        return SLURMEnvironment(auto_requeue=False)
    if SubmititLocalEnvironment.detect():
        return SubmititLocalEnvironment()
    return None


def world_size(hardware: Any) -> int:
    """num_nodes × devices for an explicit device count; 1 for devices=-1/auto on one node."""
    devices, nodes = hardware.get("devices", 1), int(hardware.get("num_nodes") or 1)
    return nodes * devices if isinstance(devices, int) and devices > 0 else nodes


def trainer_devices(hardware: Any) -> dict[str, Any]:
    """pl.Trainer arguments: accelerator, devices, num_nodes, strategy (+ plugins: the cluster environment
    for strategy ddp). ConfigError for a multi-rank ddp run that nothing launched, or a hardware config
    that does not match the tasks SLURM / submitit started."""
    accel = hardware.get("accelerator", "cpu")
    strategy = hardware.get("strategy", "auto")
    nodes = hardware.get("num_nodes") or 1
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ConfigError(f"hardware.num_nodes must be an integer >= 1, got {nodes!r}.")
    out = {"accelerator": "gpu" if accel in ("gpu", "cuda") else accel, "devices": hardware.get("devices", 1),
           "num_nodes": nodes, "strategy": strategy}
    if strategy != "ddp":
        return out
    env = external_environment()
    want = world_size(hardware)
    if env is None:
        if want > 1:
            raise ConfigError(
                f"hardware.strategy=ddp with {nodes} node(s) × {hardware.get('devices')} device(s) needs one process "
                "per rank started by SLURM: run it with `srun python run.py ...` inside an sbatch job, or with "
                "`python run.py -m hydra/launcher=slurm ...` (see docs/cluster.md); on one machine use "
                "hardware=multi_gpu or hardware=ddp_cpu.")
        return out
    if env.world_size() != want:
        raise ConfigError(
            f"{type(env).__name__} started {env.world_size()} task(s) but the hardware config asks for "
            f"hardware.num_nodes={nodes} × hardware.devices={hardware.get('devices')} = {want}: make them agree "
            "(with hydra/launcher=slurm they follow hardware; with srun, --nodes and --ntasks-per-node).")
    out["plugins"] = [env]
    return out


def launch_rank(hardware: Any) -> int:
    """This process's global rank when the ranks were started from outside (ddp under SLURM or submitit),
    else 0: the process that prepares and finishes the job (ddp_spawn's workers never run task code)."""
    if hardware.get("strategy") != "ddp" or world_size(hardware) == 1:
        return 0
    env = external_environment()
    return env.global_rank() if env is not None else 0


class FastModeCallback(pl.Callback):
    """Applies hardware's fast mode to `pl_module.model` when testing starts (in every rank, after the
    model was moved to its device), restores it at the end and keeps `status` (fast_mode.status)."""

    def __init__(self, fast: FastMode) -> None:
        self.fast = fast
        self.status: dict[str, Any] | None = None

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.fast.enabled:
            accelerate(pl_module.model, self.fast)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.status = status(pl_module.model)
        restore(pl_module.model)


def run_stamp(pattern: str = "%Y-%m-%d/%H-%M-%S") -> str:
    """Hydra resolver `vizlab_run_stamp`: the run directory's time stamp, except in a multi-task srun
    step, where every task must agree on one directory: "slurm-<job id>.<step id>"."""
    tasks = int(os.environ.get("SLURM_NTASKS", "1") or 1)
    if tasks > 1 and "SLURM_JOB_ID" in os.environ and SLURMEnvironment.detect():
        return f"slurm-{os.environ['SLURM_JOB_ID']}.{os.environ.get('SLURM_STEP_ID', '0')}"
    return time.strftime(pattern)


def gpus_per_node(accelerator: str, devices: int) -> int:
    """Hydra resolver `vizlab_gpus_per_node`: GPUs a SLURM node must give, `devices` on GPUs, else 0."""
    return int(devices) if accelerator in ("gpu", "cuda", "auto") else 0


def register_resolvers() -> None:
    """Register vizlab's OmegaConf resolvers (idempotent): vizlab_run_stamp (hydra.run.dir) and
    vizlab_gpus_per_node (hardware=slurm). Done on import of this module; run.py calls it first."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("vizlab_run_stamp"):
        OmegaConf.register_new_resolver("vizlab_run_stamp", run_stamp, use_cache=True)
    if not OmegaConf.has_resolver("vizlab_gpus_per_node"):
        OmegaConf.register_new_resolver("vizlab_gpus_per_node", gpus_per_node)


register_resolvers()
