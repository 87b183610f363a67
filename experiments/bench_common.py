"""Helpers shared by the benchmark scripts: device choice, machine facts, input photos, timing sync."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_NAMES = ("chelsea", "coffee", "astronaut", "rocket")


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        print("warning: --device cuda requested but CUDA is not available; using cpu")
        return torch.device("cpu")
    return torch.device(requested)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else platform's best guess."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def load_images(n: int, size: int, device: torch.device) -> torch.Tensor:
    """(n, 3, size, size) in [0, 1]: the skimage sample photos repeated to n, bilinear + antialias."""
    from skimage import data

    photos = []
    for name in IMAGE_NAMES:
        arr = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].float() / 255
        photos.append(F.interpolate(arr, size=(size, size), mode="bilinear", antialias=True,
                                    align_corners=False).clamp(0, 1))
    batch = torch.cat([photos[i % len(photos)] for i in range(n)])
    return batch.to(device)


def predicted_targets(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def synchronize(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device | None = None,
              statistic: Callable[[list[float]], float] = statistics.median) -> float:
    """Median (or `statistic`, e.g. min) wall time of `fn()` in seconds over `repeats` calls, after `warmup`
    untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistic(times)


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int,
                     device: torch.device | None = None) -> dict[str, tuple[float, float]]:
    """{name: (median wall s, median process-CPU s)} with the calls taken round-robin (a, b, c, a, b, c, ...),
    so that a machine whose load changes during the run slows every row alike. On a shared CPU the
    process CPU time (all threads) is the steadier measure; on an idle one both agree up to the thread count."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            w, c = time.perf_counter(), time.process_time()
            fn()
            synchronize(device)
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# --- fast mode (vizlab.fast_mode) for every benchmark: --precision, --channels-last, --compile --------
PRECISION_CHOICES = ("32", "bf16-mixed", "16-mixed")


def add_fast_args(parser) -> None:
    """The fast-mode options every benchmark takes (all off by default: float32, contiguous, eager)."""
    parser.add_argument("--precision", default="32", choices=PRECISION_CHOICES,
                        help="autocast dtype around the model's forward passes (maps and metrics stay float32)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last weights and inputs")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (eager fallback on failure)")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend")


def fast_mode_of(args):
    from vizlab.fast_mode import FastMode

    return FastMode(precision=getattr(args, "precision", "32"), channels_last=getattr(args, "channels_last", False),
                    compile=getattr(args, "compile", False), compile_backend=getattr(args, "compile_backend", "inductor"))


def apply_fast(model: nn.Module, args) -> str:
    """Put `model` in the fast mode the options ask for; returns a description for the header line."""
    from vizlab.fast_mode import accelerate

    fast = fast_mode_of(args)
    fast.check_device(next(model.parameters()).device)
    accelerate(model, fast)
    return fast_description(fast)


def fast_description(fast) -> str:
    parts = [f"precision {fast.precision}"]
    if fast.channels_last:
        parts.append("channels-last")
    if fast.compile:
        parts.append(f"torch.compile ({fast.compile_backend})")
    return "fast mode: " + ", ".join(parts) if fast.enabled else "float32, eager"


def check_tolerance(args, fp32: float, reduced: float) -> float:
    """An agreement check's tolerance: `fp32` normally, `reduced` under --precision bf16/16-mixed."""
    return fp32 if getattr(args, "precision", "32") == "32" else reduced
