"""Benchmark Class Feature Pyramids: the back-step's time per clip against one forward pass of the same
network, for every 3D zoo network, at depth D = 3 (the README's "# layers").

Per network (random weights: timing only; θ = the network's default from vizlab.pyramid.defaults):
  * forward: one plain no-grad forward of the batch (the limit: the pyramid needs at least this);
  * recording forward: the pyramid's forward that also captures the activations it needs (its overhead
    over a plain forward is the cost of seeing every torch call in Python);
  * back-step: the selection of every level for every clip (shares of residual sums, contributions,
    thresholds) from the recorded activations — what the original README times (21–70 ms on 2 GTX
    1080 Ti); reported per clip and as a ratio to the forward (goal < 0.1). The first back-step for a
    model also averages every kernel window (k̄), kept while the weights are unchanged: shown apart;
  * tubes: every tree node's tube at its layer's resolution (upsampling to the clip is done on demand).
Each time is the median of --repeats runs after a warm-up. The first call traces the network once (also
shown). CPU timings move with the machine's load: the load average is printed before and after.

Run:
    make bench                                                              # with the other benchmarks
    .venv/bin/python experiments/bench_pyramid.py                           # 16 × 112², batch 1, 2 threads
    .venv/bin/python experiments/bench_pyramid.py --frames 16 --size 224 --device cuda --models i3d mfnet
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from bench_common import cpu_model, load_average, pick_device, synchronize, time_call, verdict

from vizlab.models import load_model
from vizlab.pyramid import ClassFeaturePyramid

MODELS = ("i3d", "mfnet", "resnet3d_50", "resnet3d_101", "resnet3d_152", "resnext3d_101", "r3d_18", "mc3_18",
          "r2plus1d_18")
GOAL = 0.1


@torch.no_grad()
def bench(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        model = load_model(name, device=device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)
    pyramid = ClassFeaturePyramid(model, depth=args.depth)
    plan, traced = pyramid.plan_for(x)
    forward = time_call(lambda: model(x), args.repeats, 1, device)
    recording = time_call(lambda: pyramid.record(plan, x), args.repeats, 1, device)
    logits, gaps, maps = pyramid.record(plan, x)
    target = logits.argmax(1)
    plan.kbar.clear()  # the first back-step also averages every kernel window (k̄), kept while the weights are unchanged
    start = time.perf_counter()
    pyramid.select(plan, gaps, logits, target)
    synchronize(device)
    first = time.perf_counter() - start
    stepped = time_call(lambda: pyramid.select(plan, gaps, logits, target), args.repeats, 1, device)
    levels, ctx = pyramid.select(plan, gaps, logits, target)
    tubes = time_call(lambda: pyramid.tube_maps(plan, ctx, maps, levels), args.repeats, 1, device)
    return {"name": name, "threshold": pyramid.threshold, "trace": traced, "forward": forward, "recording": recording,
            "backstep": stepped, "first": first, "tubes": tubes, "nodes": [len(level) / args.batch for level in levels[1:]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112, help="clip side (the paper used 224 for I3D and MFNet)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(f"Class Feature Pyramids back-step vs one forward: {cpu_model()}, {args.threads} threads, {device}; "
          f"clips {args.batch} × 3 × {args.frames} × {args.size}², D = {args.depth}, random weights")
    print(f"load average before: {load_average()}")
    rows = [bench(name, args, device) for name in args.models]
    print()
    print("| network | θ | forward ms | recording forward (× forward) | back-step ms / clip | back-step / forward | "
          "first back-step ms (+ k̄) | tubes ms / clip | nodes per level | first-call trace s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        ratio = r["backstep"] / r["forward"]
        nodes = " / ".join(f"{n:.0f}" for n in r["nodes"])
        print(f"| {r['name']} | {r['threshold']:g} | {1000 * r['forward']:.0f} | {1000 * r['recording']:.0f} "
              f"({r['recording'] / r['forward']:.2f}×) | {1000 * r['backstep'] / args.batch:.1f} | {ratio:.4f} "
              f"{verdict(ratio < GOAL)} | {1000 * r['first']:.0f} | {1000 * r['tubes'] / args.batch:.1f} | {nodes} | "
              f"{r['trace']:.2f} |")
    print(f"\nload average after: {load_average()}")
    worst = max(r["backstep"] / r["forward"] for r in rows)
    print(f"goal: back-step < {GOAL} × forward on every network: {verdict(worst < GOAL)} (worst {worst:.4f})")


if __name__ == "__main__":
    main()
