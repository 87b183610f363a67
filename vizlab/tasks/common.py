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
    """pl.Trainer arguments from the hardware config: accelerator, devices, strategy, precision
    (hardware.precision, e.g. "16-mixed" on GPUs; default "32-true")."""
    accel = hardware.get("accelerator", "cpu")
    return {"accelerator": "gpu" if accel in ("gpu", "cuda") else accel, "devices": hardware.get("devices", 1),
            "strategy": hardware.get("strategy", "auto"), "precision": hardware.get("precision") or "32-true"}


def positive_int(task: DictConfig, key: str) -> int:
    """task.<key> if it is an integer >= 1, else ConfigError naming it."""
    return check_number(f"task.{key}", task.get(key), low=1, integer=True)
