"""Every benchmark on one device, in float32 and in fast mode, within a time budget: `make bench-gpu`.

Runs each benchmark script of BENCHES as its own process (a clean CUDA context and timer each) with
pinned sizes: "gpu" sizes for a real accelerator, "tiny" sizes (--tiny; the small shapes_cnn where a
script takes --model) that check the whole path on a CPU in a few minutes. Each script prints its own tables — absolute times, ratios to the limit
(design.md) and to the peers (Captum, pytorch-grad-cam, Quantus, TorchRay) — and this driver prints
them as they come, then a summary: every run's wall time, status, and fast mode's wall time against
float32's. Fast mode = --precision bf16-mixed --channels-last (add --compile to also torch.compile
the models; bench_fast_mode.py always measures compile side by side).

A run that fails or passes its time limit is reported and the driver goes on; the exit status is 1
if any run failed, 0 otherwise. Runs that no longer fit the budget are skipped (listed as such).

Adding a benchmark: append a Bench(...) to BENCHES with its script and its arguments for both size
profiles; the script must take --device {cpu,cuda} and, when `fast` is set, the fast-mode options of
bench_common.add_fast_args (--precision, --channels-last, --compile).

Run:
    make bench-gpu                                              # = python experiments/bench_gpu.py --device cuda
    .venv/bin/python experiments/bench_gpu.py --device cpu --tiny                # the CPU check
    .venv/bin/python experiments/bench_gpu.py --device cuda --only gradient_methods,fast_mode --compile
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAST_ARGS = ["--precision", "bf16-mixed", "--channels-last"]


@dataclass(frozen=True)
class Bench:
    """One benchmark script run with pinned sizes. gpu / tiny: its arguments for each size profile.
    fast: the script takes bench_common's fast-mode options (run twice: float32 and fast).
    compile: it also takes --compile (training benchmarks do not).
    limit_s: its own time limit (GPU profile; the CPU check uses the tiny sizes and --limit-scale)."""

    name: str
    script: str
    gpu: tuple[str, ...]
    tiny: tuple[str, ...]
    fast: bool = True
    compile: bool = True
    limit_s: int = 120


BENCHES: tuple[Bench, ...] = (
    Bench("fast_mode", "bench_fast_mode.py",
          gpu=("--batch", "16", "--clips", "8", "--di-steps", "100", "--di-batch", "64", "--repeats", "5"),
          tiny=("--models", "shapes_cnn,r2plus1d_18", "--batch", "2", "--clips", "1", "--frames", "4", "--clip-size",
                "32", "--di-steps", "4", "--repeats", "1", "--modes", "32,bf16-mixed,compile",
                "--compile-backend", "aot_eager"),
          fast=False, limit_s=240),
    Bench("gradient_methods", "bench_gradient_methods.py",
          gpu=("--batch", "16", "--repeats", "10", "--warmup", "3", "--ig-steps", "25"),
          tiny=("--model", "shapes_cnn", "--batch", "2", "--repeats", "1", "--warmup", "0", "--ig-steps", "2")),
    Bench("metrics", "bench_metrics.py",
          gpu=("--batch", "16", "--metric-batch", "64", "--repeats", "3", "--quantus-images", "2"),
          tiny=("--model", "shapes_cnn", "--batch", "2", "--pixels-per-step", "256", "--metric-batch", "16",
                "--quantus-images", "1", "--skip-sweep")),
    Bench("extremal_perturbation", "bench_perturbation.py",
          gpu=("--parts", "images", "--batch", "8", "--iterations", "100", "--repeats", "5"),
          tiny=("--parts", "images", "--batch", "1", "--iterations", "1", "--areas", "0.1", "--size", "32",
                "--di-steps", "2", "--repeats", "1", "--chunks", "0")),
    Bench("step", "bench_perturbation.py",
          gpu=("--parts", "step", "--clips", "4", "--clip-iterations", "50", "--frames", "16", "--clip-size", "112",
               "--repeats", "5"),
          tiny=("--parts", "step", "--clips", "1", "--clip-iterations", "1", "--frames", "8", "--clip-size", "24",
                "--repeats", "1")),
    Bench("hrcam_training", "bench_hrcam.py",
          gpu=("--configs", "shapes,paper", "--batch", "64", "--paper-batch", "16", "--repeats", "5"),
          tiny=("--configs", "shapes", "--batch", "2", "--repeats", "1"), compile=False),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--tiny", action="store_true", help="tiny sizes: checks every path end to end in minutes")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(b.name for b in BENCHES)}")
    p.add_argument("--modes", default="fp32,fast", help="fp32, fast or both (comma-separated)")
    p.add_argument("--compile", action="store_true", help="fast mode also torch.compiles the models")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for everything, later runs are skipped (default 600 on cuda, 1800 on cpu)")
    p.add_argument("--limit-scale", type=float, default=None,
                   help="multiplies each benchmark's time limit (default 1 on cuda, 3 on cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads of every script (default: its own)")
    p.add_argument("--list", action="store_true", help="print the command lines and exit")
    args = p.parse_args(argv)
    names = {b.name for b in BENCHES}
    args.only = [n for n in args.only.split(",") if n]
    if unknown := [n for n in args.only if n not in names]:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    args.modes = [m for m in args.modes.split(",") if m]
    if not args.modes or any(m not in ("fp32", "fast") for m in args.modes):
        p.error("--modes takes fp32, fast or fp32,fast")
    if args.limit_scale is None:
        args.limit_scale = 1.0 if args.device == "cuda" else 3.0
    if args.budget is None:
        args.budget = 600.0 if args.device == "cuda" else 1800.0
    return args


def plan(args: argparse.Namespace) -> list[tuple[Bench, str, list[str]]]:
    """(benchmark, mode, command line) for every run, in order."""
    runs = []
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        sizes = list(bench.tiny if args.tiny else bench.gpu)
        base = [sys.executable, str(HERE / bench.script), "--device", args.device, *sizes]
        if args.threads:
            base += ["--threads", str(args.threads)]
        modes = args.modes if bench.fast else ["fp32"]
        for mode in modes:
            fast = [*FAST_ARGS, *(["--compile"] if args.compile and bench.compile else [])] if mode == "fast" else []
            runs.append((bench, mode if bench.fast else "side by side", base + fast))
    return runs


def environment() -> str:
    import torch

    line = f"torch {torch.__version__}, CUDA {torch.version.cuda}"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        line += (f", {props.name} ({props.total_memory / 2**30:.0f} GiB, capability {props.major}.{props.minor}, "
                 f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'})")
    else:
        line += f", no GPU; CPU capability {torch.backends.cpu.get_cpu_capability()}"
    return line + f", {os.cpu_count()} logical CPUs"


def run_one(command: list[str], limit: float) -> tuple[int | str, float]:
    """Run one script, streaming its output; (exit status or "timeout", wall seconds)."""
    start = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
        [str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.Popen(command, cwd=HERE.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)

    def echo() -> None:
        for line in proc.stdout:
            if not line.lstrip().startswith(("W1", "I1")):  # torch's C++ log lines (e.g. CUDA_HOME notices)
                print(line, end="", flush=True)

    reader = threading.Thread(target=echo, daemon=True)
    reader.start()
    try:
        status: int | str = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        status = "timeout"
    reader.join(timeout=5)
    return status, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = plan(args)
    if args.list:
        for bench, mode, command in runs:
            print(f"{bench.name} [{mode}]: {' '.join(command[1:])}")
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device is visible; check the driver on this machine with "
              "`python experiments/bench_gpu.py --device cpu --tiny`", file=sys.stderr)
        return 2
    print(f"# bench_gpu — {args.device}, {'tiny' if args.tiny else 'GPU'} sizes, budget {args.budget:.0f} s; "
          f"{environment()}")
    print(f"fast mode = {' '.join(FAST_ARGS + (['--compile'] if args.compile else []))}")
    start = time.perf_counter()
    results: list[tuple[Bench, str, int | str, float]] = []
    for bench, mode, command in runs:
        left = args.budget - (time.perf_counter() - start)
        limit = min(bench.limit_s * args.limit_scale, left)
        if limit < 10:
            results.append((bench, mode, "skipped (budget)", 0.0))
            continue
        print(f"\n{'=' * 100}\n## {bench.name} [{mode}] (limit {limit:.0f} s): {' '.join(command[1:])}\n", flush=True)
        status, wall = run_one(command, limit)
        results.append((bench, mode, status, wall))
    total = time.perf_counter() - start
    print(f"\n{'=' * 100}\n## summary ({args.device}, {'tiny' if args.tiny else 'GPU'} sizes): {total:.0f} s in all "
          f"(budget {args.budget:.0f} s)\n")
    print("| benchmark | mode | wall s (incl. start-up) | status | fast / fp32 wall |")
    print("|---|---|---:|---|---:|")
    walls = {(b.name, m): w for b, m, s, w in results if s == 0}
    for bench, mode, status, wall in results:
        ratio = ""
        if mode == "fast" and (bench.name, "fp32") in walls and (bench.name, "fast") in walls:
            ratio = f"{walls[(bench.name, 'fast')] / walls[(bench.name, 'fp32')]:.2f}"
        shown = "ok" if status == 0 else (f"exit {status}" if isinstance(status, int) else status)
        print(f"| {bench.name} | {mode} | {wall:.1f} | {shown} | {ratio} |")
    failed = [r for r in results if r[2] != 0 and r[2] != "skipped (budget)"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
