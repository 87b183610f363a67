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
