"""Helpers shared by tasks: device selection, thread count, task option checks."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from vizlab.errors import ConfigError
from vizlab.validation import check_number

ACCELERATORS = ("cpu", "gpu", "cuda", "auto")


def resolve_device(hardware: DictConfig) -> torch.device:
    """hardware.accelerator → torch.device; also applies hardware.threads to torch."""
    accel = hardware.get("accelerator", "cpu")
    if accel not in ACCELERATORS:
        raise ConfigError(f"hardware.accelerator must be one of {ACCELERATORS}, got {accel!r}.")
    threads = check_number("hardware.threads", hardware.get("threads"), low=1, integer=True, optional=True)
    if threads:
        torch.set_num_threads(int(threads))
    if accel == "auto":
        accel = "gpu" if torch.cuda.is_available() else "cpu"
    if accel in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("hardware=gpu but no CUDA device is visible; use hardware=cpu.")
        return torch.device("cuda", 0)
    return torch.device("cpu")


def trainer_hardware(hardware: DictConfig) -> dict:
    """pl.Trainer arguments from the hardware config: accelerator, devices, num_nodes, strategy, precision
    (hardware.precision: 32, bf16-mixed or 16-mixed, Lightning's automatic mixed precision; default "32-true")."""
    from vizlab.lit.hardware import trainer_devices, world_size

    if hardware.get("strategy") == "ddp" and world_size(hardware) > 1:
        raise ConfigError("Only task=explain runs across SLURM ranks (hardware=slurm with several); training and "
                          "evaluate_classifier run on one machine. "
                          "Use hardware=gpu / multi_gpu, or hardware=slurm hardware.num_nodes=1 hardware.devices=1 "
                          "(one GPU, also through hydra/launcher=slurm).")
    return {**trainer_devices(hardware), "precision": hardware.get("precision") or "32-true"}


def positive_int(task: DictConfig, key: str) -> int:
    """task.<key> if it is an integer >= 1, else ConfigError naming it."""
    return check_number(f"task.{key}", task.get(key), low=1, integer=True)
