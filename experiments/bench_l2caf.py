"""Benchmark vizlab's L2-CAF: fast vs slow mode, fast mode against its limit, batched targets vs separate runs.

Fast mode computes the trunk (input → layer) once and runs only the rest of the network per
iteration: the torch.fx head ("fx" engine) or, for networks fx cannot trace, a forward pass whose
modules before the layer return their recorded outputs ("replay"). Slow mode runs the full network
per iteration with a forward hook substituting A ⊙ f̂ (the TensorFlow original's "slow" script).
The paper's README reports about 4 s (slow) vs 0.3 s (fast) per image on a GPU, ≈ 13×.

"The limit" (design.md, L2-CAF): iterations × (forward + backward of the head alone) on the batch
being optimised — the head applied to A ⊙ f with only f requiring a gradient, measured in the same
run. Fast mode also needs the trunk once per call (one forward pass, also timed), which the limit
leaves out; with few iterations and a small head it dominates. For fx-traceable networks the head is the split's head module; for I3D (not traceable) it is
written out (avg_pool → dropout → logits → mean over time).

Batched targets: N images × K classes (each image's top-K) as one optimisation of N·K rows,
versus K·N separate one-row runs (what the originals do: one image and one class per optimisation).

Every run uses a fixed iteration count (stop_tol = 0), so the ratios do not depend on convergence.
CPU timings need an idle machine; the script prints the load average and warns above 1. On a
shared machine, `--clock cpu --threads 1` times the process's CPU time instead of the wall clock,
which other jobs disturb much less (one thread: no time spent spinning in waiting worker threads).

Run:
    .venv/bin/python experiments/bench_l2caf.py --iterations 50 --batch 4 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from bench_common import cpu_model, load_average, load_images, pick_device, predicted_targets, synchronize
from torch import nn

import vizlab
from vizlab.layers import unwrap
from vizlab.methods import build
from vizlab.methods.split import split_at
from vizlab.methods.targets import repeat_for_targets, top_k_targets

CASES = ("efficientnet_lite0:bn2", "efficientnet_lite0:blocks.5", "r2plus1d_18:layer4", "i3d:Mixed_5c")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), help="model:layer pairs to time")
    p.add_argument("--iterations", type=int, default=50, help="iterations per run (the originals: up to 1000)")
    p.add_argument("--batch", type=int, default=4, help="images (clips) per call")
    p.add_argument("--topk", type=int, default=3, help="targets per image for the batched-targets comparison")
    p.add_argument("--size", type=int, default=224, help="image side")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (video models)")
    p.add_argument("--clip-size", type=int, default=112, help="clip side (video models)")
    p.add_argument("--repeats", type=int, default=5, help="timed head passes for the limit (median)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda is used only if available")
    p.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                   help="wall: elapsed time · cpu: this process's CPU time (robust to other jobs; use --threads 1)")
    args = p.parse_args(argv)
    for name in ("iterations", "batch", "topk", "size", "frames", "clip_size", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    synchronize(device)
    start = clock()
    out = fn()
    synchronize(device)
    return clock() - start, out


def load_case(name: str, args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights for the video models: timing does not depend on them
        model = vizlab.load_model(name, pretrained=None if name == "efficientnet_lite0" else False, device=device)
    if model.info.is_video:
        gen = torch.Generator().manual_seed(0)
        clips = torch.rand(args.batch, 3, args.frames, args.clip_size, args.clip_size, generator=gen).to(device)
        return model, model.normalize(clips)
    return model, model.normalize(load_images(args.batch, args.size, device))


def head_function(model: nn.Module, layer: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network after `layer` as a function of the layer's output (fx head, or I3D's written out)."""
    net = unwrap(model)
    if type(net).__name__ == "InceptionI3d" and layer == "Mixed_5c":
        return lambda a: net.logits(net.dropout(net.avg_pool(a))).mean(dim=(2, 3, 4))
    split = split_at(net, layer)
    return lambda a: split.head(a)


def head_seconds(model: nn.Module, layer: str, x: torch.Tensor, repeats: int, device: torch.device) -> float:
    """Median seconds of one forward + backward of the head alone on A ⊙ f (f: the only leaf with a gradient)."""
    from vizlab.layers import resolve_layer
    from vizlab.methods.hooks import capture_layer

    with torch.no_grad(), capture_layer(resolve_layer(model, layer)) as cap:
        model(x)
    a = cap.activation.clone()
    head = head_function(model, layer)
    f = torch.ones(a.shape[0], 1, *a.shape[2:], device=a.device, requires_grad=True)

    def once() -> None:
        with torch.enable_grad():
            out = head(a * f)
            torch.autograd.grad(out.sum(), f)

    once()
    return statistics.median(timed(once, device)[0] for _ in range(repeats))


def bench_case(case: str, args: argparse.Namespace, device: torch.device) -> tuple[str, str]:
    name, layer = case.split(":")
    model, x = load_case(name, args, device)
    targets = predicted_targets(model, x)
    n, iters = x.shape[0], args.iterations
    common = {"layer": layer, "max_iter": iters, "stop_tol": 0.0, "progress": False}
    fast = build("l2caf", model, mode="fast", **common)
    slow = build("l2caf", model, mode="slow", **common)
    fast(x[:1], targets[:1])  # warm-up; traces the network once (the split is kept by the method object)
    fast_s, fast_info = timed(lambda: fast(x, targets, return_info=True), device)
    slow_s, slow_info = timed(lambda: slow(x, targets, return_info=True), device)
    limit = head_seconds(model, layer, x, args.repeats, device) * iters
    with torch.no_grad():
        forward = statistics.median(timed(lambda: model(x), device)[0] for _ in range(3))
    diff = (fast_info.raw - slow_info.raw).abs().max().item()
    shape = "×".join(str(s) for s in fast_info.raw.shape[1:])
    speed = (f"| {name} | {layer} ({shape}) | {fast.engine} | {n} | {iters} | {slow_s / n:.3f} | {fast_s / n:.3f} | "
             f"**{slow_s / fast_s:.1f}×** | {limit / n:.3f} | {forward / n:.3f} | {fast_s / limit:.2f} | "
             f"{fast_s / (limit + forward):.2f} | {diff:.1e} |")

    table = top_k_targets(model, x, args.topk)
    rows, row_targets = repeat_for_targets(x, table)
    batched_s, batched = timed(lambda: fast(rows, row_targets, return_info=True), device)

    def separate() -> torch.Tensor:
        return torch.cat([fast(rows[r:r + 1], int(row_targets[r]), return_info=True).raw for r in range(rows.shape[0])])

    separate_s, separate_raw = timed(separate, device)
    agree = (batched.raw - separate_raw).abs().max().item()
    batching = (f"| {name} | {layer} | {n} × {args.topk} | {batched_s:.2f} | {separate_s:.2f} | "
                f"**{separate_s / batched_s:.1f}×** | {agree:.1e} |")
    return speed, batching


def main(argv: list[str] | None = None) -> None:
    global clock
    args = parse_args(argv)
    clock = CLOCK[args.clock]
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"# bench_l2caf — {cpu_model()}, torch {torch.__version__}, {args.threads} threads, device {device}, "
          f"{args.clock} clock, load average {load_average()}")
    if load > 1 and args.clock == "wall":
        print(f"warning: load average {load:.2f} > 1: other jobs share the CPU; absolute times are unreliable, "
              "ratios measured in one run less so")
    torch.manual_seed(0)
    speed, batching = [], []
    for case in args.cases:
        s, b = bench_case(case, args, device)
        print(s, flush=True)
        speed.append(s)
        batching.append(b)
    print(f"\n## Fast vs slow, {args.iterations} iterations, class-specific l2norm (seconds per image or clip; images "
          f"{args.size}², clips {args.frames} × {args.clip_size}²)\n")
    print("| model | layer (map) | fast engine | batch | iterations | slow s | fast s | slow / fast | limit s | "
          "one forward s | fast / limit | fast / (limit + one forward) | max |fast − slow| |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(speed))
    print(f"\n## Batched targets: each image's top-{args.topk} classes as one optimisation vs one run per "
          f"(image, class), fast mode, {args.iterations} iterations (seconds in total)\n")
    print("| model | layer | images × targets | batched s | separate runs s | separate / batched | max |difference| |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(batching))
    print(f"\nload average at the end: {load_average()}")


if __name__ == "__main__":
    main()
