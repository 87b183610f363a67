"""Benchmark vizlab's extremal perturbation (images) and STEP (clips) against TorchRay and the limit.

Image EP. vizlab optimises N images × A areas as one batch: every iteration is one forward and
one backward (to the mask parameters) of N·A perturbed images. TorchRay's
`extremal_perturbation` takes one image per call (its A areas form the batch), so N calls.
Both run the same number of iterations with TorchRay's defaults (blur, 8 levels, step 7,
sigma 21, jitter, SGD lr 0.01, momentum = dampening = 0.9) on the same model and images.

"The limit" (design.md): iterations × (forward + backward to the input) of the batch being
optimised — N·A images at once, parameters frozen — measured in the same run and scaled to the
iteration count. Everything else a method does per iteration (mask generation, pyramid lookup,
sorting for the area term, the SGD step) is overhead above it.

Quality: deletion and insertion AUC (vizlab's DeletionInsertion, default protocol) of both
results — saliency = mean of the per-area masks for both (TorchRay's benchmark sums them: same
ranking) — and the largest difference between the two sets of masks (vizlab returns the masks of
the final parameters; TorchRay's are one step older, the only intended difference).

STEP. The same STEP configuration on N clips, batched (one optimisation of N clips) versus one
clip at a time in a Python loop, plus its limit (iterations × forward + backward of N clips).
The video model is r3d_18 with random weights (nothing is downloaded); timing does not depend on
the weights. The core term is switched on halfway so that both halves of the schedule are timed.

Objective vs the oracle (`--parts oracle`). On vizlab's synthetic sets (shapes_cnn on 64² shapes
for image EP; motion_cnn on 8 × 48² clips for 2D-EP, 3D-EP and STEP) every method's final
objective on its optimised masks against the same objective on the oracle mask (the object sized
to the area and projected on the mask generator, `vizlab.methods.perturbation.oracle`), and the
share of samples whose optimised objective is within 5 % of the oracle's or better.

Iteration counts are small by default (the originals run 800 and 2000): the cost per iteration
is constant, so the ratios do not depend on the count. CPU timings need an idle machine; the
script prints the load average and warns above 1.

Run:
    make bench
    .venv/bin/python experiments/bench_perturbation.py --iterations 50 --batch 8 --threads 2
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from bench_common import (
    add_fast_args,
    apply_fast,
    cpu_model,
    load_average,
    load_images,
    pick_device,
    predicted_targets,
    synchronize,
)
from torch import nn

import vizlab
from vizlab.methods import build
from vizlab.metrics import DeletionInsertion


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--iterations", type=int, default=50, help="image EP iterations (TorchRay default: 800)")
    p.add_argument("--batch", type=int, default=8, help="images per vizlab call")
    p.add_argument("--areas", type=float, nargs="+", default=[0.05, 0.1, 0.2], help="target areas")
    p.add_argument("--chunks", type=int, nargs="+", default=[0, 1],
                   help="vizlab batch_size values to time (images per optimisation; 0 = the whole batch)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--size", type=int, default=224, help="image side")
    p.add_argument("--di-steps", type=int, default=50, help="deletion/insertion steps for the quality check")
    p.add_argument("--clips", type=int, default=2, help="clips for the STEP comparison (0 skips it)")
    p.add_argument("--clip-iterations", type=int, default=10, help="STEP iterations (seed default: 2000)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--clip-size", type=int, default=112, help="clip side")
    p.add_argument("--repeats", type=int, default=5, help="timed forward+backward passes for the limits (median)")
    p.add_argument("--skip-torchray", action="store_true", help="do not run TorchRay")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda is used only if available")
    p.add_argument("--parts", nargs="+", default=["images", "step", "oracle"], choices=("images", "step", "oracle"),
                   help="which benchmarks to run: image EP (vs TorchRay), STEP (batched vs looped), the objective "
                        "reached vs the oracle mask's on the synthetic sets")
    p.add_argument("--oracle-samples", type=int, default=6, help="images / clips for the oracle comparison")
    p.add_argument("--oracle-iterations", type=int, default=300,
                   help="iterations of every method in the oracle comparison (image EP's λ schedule is compressed "
                        "to reach its default end weight)")
    p.add_argument("--oracle-restarts", type=int, nargs="+", default=[1, 4],
                   help="image EP starts per mask in the oracle comparison, one row each (best of K: `restarts`)")
    add_fast_args(p)
    args = p.parse_args(argv)
    for name in ("iterations", "batch", "threads", "oracle_samples", "oracle_iterations", "size", "di_steps", "clip_iterations", "frames", "clip_size",
                 "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.clips < 0:
        p.error("--clips must be >= 0")
    if not all(0 < a < 1 for a in args.areas):
        p.error("--areas must lie strictly between 0 and 1")
    return args


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def fwd_bwd_seconds(model: nn.Module, x: torch.Tensor, t: torch.Tensor, repeats: int, device: torch.device) -> float:
    """Median seconds of one forward + backward to the input of batch x (parameters frozen)."""

    def once() -> None:
        leaf = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(leaf)
            torch.autograd.grad(logits.gather(1, t[:, None]).sum(), leaf)

    once()  # warm-up
    return statistics.median(timed(once, device)[0] for _ in range(repeats))


def row(name: str, seconds: float, items: int, unit: str, limit: float, ref: float | None) -> str:
    vs = f"{seconds / ref:.2f}" if ref else "—"
    return f"| {name} | {seconds:.2f} | {items / seconds:.3f} {unit}/s | {seconds / limit:.2f} | {vs} |"


def bench_images(args: argparse.Namespace, device: torch.device) -> None:
    model = vizlab.load_model("efficientnet_lite0", device=device)
    print(apply_fast(model, args))
    x = model.normalize(load_images(args.batch, args.size, device))
    targets = predicted_targets(model, x)
    areas = list(args.areas)
    n, a, iters = args.batch, len(areas), args.iterations
    rows = n * a
    per_iter = fwd_bwd_seconds(model, x.repeat_interleave(a, 0), targets.repeat_interleave(a), args.repeats, device)
    limit = per_iter * iters
    chunked = {}  # batch_size → (seconds, limit at that granularity, info)
    for chunk in args.chunks:
        size = chunk or n
        # area_warmup=0: TorchRay's start, so that the masks compare with TorchRay's (sizes: the rule gives
        # TorchRay's 7 / 21 / 20 at 224 px)
        method = build("extremal", model, areas=areas, max_iter=iters, area_warmup=0, progress=False, batch_size=size)
        build("extremal", model, areas=areas, max_iter=1, progress=False, batch_size=size)(x, targets)  # warm-up
        seconds, result = timed(lambda method=method: method(x, targets, return_info=True), device)
        part = fwd_bwd_seconds(model, x[:size].repeat_interleave(a, 0), targets[:size].repeat_interleave(a),
                               args.repeats, device) * iters * math.ceil(n / size)
        chunked[size] = (seconds, part, result)
    ours_s, _, info = chunked[args.chunks[0] or n]
    print(f"\n## Image extremal perturbation: {n} images × {a} areas {areas}, {iters} iterations, "
          f"{args.size}², efficientnet_lite0\n")
    print("| method | seconds | throughput | × limit | × TorchRay | × limit at its batch size |")
    print("|---|---:|---:|---:|---:|---:|")
    theirs_s, theirs = None, None
    if not args.skip_torchray:
        try:
            from torchray.attribution.extremal_perturbation import extremal_perturbation
        except ImportError as exc:  # pragma: no cover - depends on the environment
            print(f"(TorchRay not importable: {exc}; install with `pip install --no-deps torchray==1.0.0.2`)")
        else:
            def torchray_all(iterations: int) -> torch.Tensor:
                masks = []
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # TorchRay's torch.meshgrid call warns on recent torch
                    for i in range(n):
                        m, _ = extremal_perturbation(model, x[i:i + 1], int(targets[i]), areas=areas,
                                                     max_iter=iterations)
                        masks.append(m[:, 0])
                return torch.stack(masks)  # (N, A, H, W)

            torchray_all(1)  # warm-up
            theirs_s, theirs = timed(lambda: torchray_all(iters), device)
            for p in model.parameters():  # TorchRay leaves them frozen; vizlab's zoo model is frozen anyway
                p.requires_grad_(False)
    print(f"| limit: {iters} × fwd+bwd of {rows} images | {limit:.2f} | {n / limit:.3f} images/s | 1.00 | "
          f"{limit / theirs_s:.2f} | — |" if theirs_s else
          f"| limit: {iters} × fwd+bwd of {rows} images | {limit:.2f} | {n / limit:.3f} images/s | 1.00 | — | — |")
    for size, (seconds, part, _) in chunked.items():
        how = "one batch" if size == n else f"batch_size={size}: {math.ceil(n / size)} optimisations of {size * a} rows"
        print(row(f"**vizlab extremal** ({how})", seconds, n, "images", limit, theirs_s)
              + f" {seconds / part:.2f} ({part:.2f} s) |")
    if theirs_s:
        print(row("TorchRay extremal_perturbation (one image per call)", theirs_s, n, "images", limit, theirs_s)
              + " — |")
    print(f"\nper iteration: limit {per_iter * 1e3:.0f} ms, vizlab {ours_s / iters * 1e3:.0f} ms"
          + (f", TorchRay {theirs_s / iters * 1e3:.0f} ms" if theirs_s else ""))

    metric = DeletionInsertion(model, steps=args.di_steps)
    ours_auc = {k: float(v.mean()) for k, v in metric.evaluate(x, info.saliency, targets).items()}
    print("\n| quality | deletion AUC (↓) | insertion AUC (↑) |")
    print("|---|---:|---:|")
    print(f"| vizlab | {ours_auc['deletion_auc']:.4f} | {ours_auc['insertion_auc']:.4f} |")
    if theirs is not None:
        metric = DeletionInsertion(model, steps=args.di_steps)
        auc = {k: float(v.mean()) for k, v in metric.evaluate(x, theirs.mean(1), targets).items()}
        print(f"| TorchRay | {auc['deletion_auc']:.4f} | {auc['insertion_auc']:.4f} |")
        diff = (theirs - info.extras["masks"]).abs().max().item()
        print(f"\nlargest |vizlab − TorchRay| mask difference: {diff:.2e} (vizlab: final parameters; "
              "TorchRay: one step earlier)")


def bench_step(args: argparse.Namespace, device: torch.device) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "random weights": timing does not depend on them
        model = vizlab.load_model("r3d_18", pretrained=False, device=device)
    print(apply_fast(model, args))
    gen = torch.Generator().manual_seed(0)
    clips = torch.rand(args.clips, 3, args.frames, args.clip_size, args.clip_size, generator=gen).to(device)
    x = model.normalize(clips)
    targets = predicted_targets(model, x)
    iters = args.clip_iterations
    method = build("step", model, max_iter=iters, core_start=max(1, iters // 2), progress=False)
    build("step", model, max_iter=1, progress=False)(x, targets)  # warm-up
    batched_s, batched = timed(lambda: method(x, targets), device)

    def loop() -> torch.Tensor:
        return torch.cat([method(x[i:i + 1], targets[i:i + 1]) for i in range(args.clips)])

    loop_s, looped = timed(loop, device)
    limit = fwd_bwd_seconds(model, x, targets, args.repeats, device) * iters
    print(f"\n## STEP: {args.clips} clips × {args.frames} × {args.clip_size}², {iters} iterations, r3d_18\n")
    print("| run | seconds | throughput | × limit | × one clip at a time |")
    print("|---|---:|---:|---:|---:|")
    print(f"| limit: {iters} × fwd+bwd of {args.clips} clips | {limit:.2f} | {args.clips / limit:.3f} clips/s | 1.00 | "
          f"{limit / loop_s:.2f} |")
    print(row("**vizlab STEP, batched**", batched_s, args.clips, "clips", limit, loop_s))
    print(row("vizlab STEP, one clip at a time", loop_s, args.clips, "clips", limit, loop_s))
    print(f"\nbatched vs looped masks: max difference {(batched - looped).abs().max().item():.2e}")


def bench_oracle(args: argparse.Namespace, device: torch.device) -> None:
    from perturbation_localisation import data

    from vizlab.methods.perturbation.oracle import optimality_check

    iters, n = args.oracle_iterations, args.oracle_samples
    growth = 1.0035 ** (800 / iters)  # image EP: the same end weight λ as TorchRay's 800 iterations
    print(f"\n## Objective reached vs the oracle mask: {n} samples, {iters} iterations, area 0.1\n")
    print("| data | method | objective, optimised (↓) | objective, oracle | within 5 % of the oracle | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, methods in (("shapes", ("extremal",)), ("motion", ("ep2d", "ep3d", "step"))):
        model, _, x, y, masks = data(kind, n)
        model, x = model.to(device), x.to(device)
        runs = [(name, k) for name in methods for k in (args.oracle_restarts if name == "extremal" else [1])]
        for name, restarts in runs:
            options = {"max_iter": iters, "progress": False, "restarts": restarts}
            if name == "extremal":
                options["area_growth"] = growth
            start = time.perf_counter()
            method = build(name, model, **options)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                report = optimality_check(method, x, y.to(device), masks.to(device))
            seconds = time.perf_counter() - start
            summary = report.summary()
            shown = f"{name} ×{restarts}" if restarts > 1 else name
            print(f"| {kind} | {shown} | {summary['optimised']:.3g} | {summary['oracle']:.3g} | "
                  f"{report.passed[report.valid].sum().item()}/{report.valid.sum().item()} ({summary['fraction']:.2f}) | "
                  f"{seconds:.0f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"# bench_perturbation — {cpu_model()}, torch {torch.__version__}, {args.threads} threads, "
          f"device {device}, load average {load_average()}")
    if load > 1:
        print(f"warning: load average {load:.2f} > 1: other jobs share the CPU; absolute times are unreliable, "
              "ratios measured in one run less so")
    torch.manual_seed(0)
    if "images" in args.parts:
        bench_images(args, device)
    if args.clips and "step" in args.parts:
        bench_step(args, device)
    if "oracle" in args.parts:
        bench_oracle(args, device)


if __name__ == "__main__":
    main()
