"""Fast mode against float32, side by side in one run: Grad-CAM and deletion/insertion on the embedded
EfficientNet-Lite0 (batch 16, 224²) and on r2plus1d_18 clips (16 × 112²).

For every mode (vizlab.fast_mode: --modes, from 32, bf16-mixed, 16-mixed, channels_last, compile =
channels-last + torch.compile, fast = bf16-mixed + channels-last + torch.compile) the script times a
Grad-CAM call on the batch and a deletion + insertion evaluation of the maps, and compares with float32:
  * speed: median seconds over --repeats rounds; the modes take turns inside each round, so a change
    in machine load hits them alike; "× fp32" = mode time / float32 time (< 1: faster);
  * maps: Pearson r of each sample's Grad-CAM map with its float32 map (worst sample / mean);
  * scores: |Δ AUC| of deletion and insertion, each mode scoring its own maps, against float32
    scoring the float32 maps (mean / worst sample) — the change a user of the mode sees.
The first call of every mode is untimed ("warm-up": oneDNN / cuDNN plans, torch.compile's compilation).
Targets are float32's predicted classes, the same for every mode. Inputs: the skimage photos
(EfficientNet) and synthetic motion clips resized to 112² (r2plus1d_18 has no embedded weights: random
initialisation, so its probabilities are near uniform and its AUC changes are small in absolute terms).

Run:
    .venv/bin/python experiments/bench_fast_mode.py                      # CPU defaults (short D/I)
    .venv/bin/python experiments/bench_fast_mode.py --device cuda --di-steps 100 --clips 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from bench_common import cpu_model, fast_description, load_average, load_images, pick_device, synchronize
from omegaconf import OmegaConf
from torch import nn

import vizlab
from vizlab.fast_mode import FastForward, FastMode, pearson, restore, set_memory_format, status
from vizlab.metrics import DeletionInsertion

MODES = {
    "32": FastMode(),
    "bf16-mixed": FastMode(precision="bf16-mixed"),
    "16-mixed": FastMode(precision="16-mixed"),
    "channels_last": FastMode(channels_last=True),
    "compile": FastMode(channels_last=True, compile=True),
    "fast": FastMode(precision="bf16-mixed", channels_last=True, compile=True),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--modes", default="32,bf16-mixed,16-mixed,channels_last,compile,fast",
                   help=f"comma-separated, from {', '.join(MODES)} (32 is always run: the reference)")
    p.add_argument("--models", default="efficientnet_lite0,r2plus1d_18", help="comma-separated zoo models")
    p.add_argument("--batch", type=int, default=16, help="images per batch")
    p.add_argument("--clips", type=int, default=2, help="clips per batch")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--clip-size", type=int, default=112, help="clip side")
    p.add_argument("--di-steps", type=int, default=20, help="deletion/insertion steps (vizlab's default: 100)")
    p.add_argument("--di-batch", type=int, default=16, help="perturbed inputs per forward in deletion/insertion")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (median reported)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compile modes")
    p.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    modes = ["32", *[m for m in args.modes.split(",") if m and m != "32"]]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        p.error(f"unknown mode(s) {', '.join(unknown)}; valid: {', '.join(MODES)}")
    args.modes = modes
    for name in ("batch", "clips", "frames", "clip_size", "di_steps", "di_batch", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


@dataclass
class ModeRun:
    """One mode's persistent fast forward (compiled once) and what was measured with it."""

    fast: FastMode
    forward: FastForward | None
    gradcam_s: list[float] = field(default_factory=list)
    di_s: list[float] = field(default_factory=list)
    warmup_s: float = 0.0
    maps: torch.Tensor | None = None
    aucs: dict[str, torch.Tensor] = field(default_factory=dict)
    status: dict = field(default_factory=dict)


def activate(model: nn.Module, run: ModeRun) -> None:
    restore(model)
    if run.forward is not None:
        if run.fast.channels_last:
            set_memory_format(model, channels_last=True)
        model.forward = run.forward


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def inputs_for(model: nn.Module, args: argparse.Namespace, device: torch.device) -> torch.Tensor:
    """Normalised (N, 3, H, W) photos or (N, 3, T, S, S) synthetic motion clips on `device`."""
    if not model.info.is_video:
        return model.normalize(load_images(args.batch, model.info.input_size, device))
    from vizlab.data import build_dataset

    cfg = OmegaConf.create({"name": "synthetic_motion", "num_samples": args.clips, "size": 48, "seed": 5,
                            "frames": args.frames})
    ds = build_dataset(cfg, args.clip_size, True, args.frames)
    return model.normalize(torch.stack([ds[i]["image"] for i in range(args.clips)]).to(device))


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights (r2plus1d_18), slow reduced precision on this CPU
        model = vizlab.load_model(name, pretrained=None if name == "efficientnet_lite0" else False, device=device)
    x = inputs_for(model, args, device)
    with torch.no_grad():
        target = model(x).argmax(1)
    gradcam = vizlab.methods.build("gradcam", model)
    metric = DeletionInsertion(model, steps=args.di_steps, batch_size=args.di_batch)
    runs: dict[str, ModeRun] = {}
    for mode in args.modes:
        fast = MODES[mode]
        if fast.compile:
            fast = FastMode(fast.precision, fast.channels_last, fast.compile, args.compile_backend)
        fast.check_device(device)
        runs[mode] = ModeRun(fast, FastForward(model, fast) if fast.enabled else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for run in runs.values():  # warm-up: one of each call, untimed (compilation happens here)
            activate(model, run)
            start = time.perf_counter()
            gradcam(x, target)
            metric.evaluate(x[:1], torch.rand(x[:1].shape[:1] + x.shape[2:], device=device), target[:1])
            synchronize(device)
            run.warmup_s = time.perf_counter() - start
        for _ in range(args.repeats):
            for run in runs.values():
                activate(model, run)
                seconds, maps = timed(lambda: gradcam(x, target), device)
                run.gradcam_s.append(seconds)
                run.maps = maps
                seconds, scores = timed(lambda run=run: metric.evaluate(x, run.maps, target), device)
                run.di_s.append(seconds)
                run.aucs = {k: v for k, v in scores.items() if k.endswith("_auc")}
                run.status = status(model)
    restore(model)
    return report_rows(name, x, runs)


def report_rows(name: str, x: torch.Tensor, runs: dict[str, ModeRun]) -> list[dict]:
    ref = runs["32"]
    ref_g, ref_d = statistics.median(ref.gradcam_s), statistics.median(ref.di_s)
    rows = []
    for mode, run in runs.items():
        g, d = statistics.median(run.gradcam_s), statistics.median(run.di_s)
        r = pearson(run.maps, ref.maps)
        delta = {k: (run.aucs[k] - ref.aucs[k]).abs() for k in ref.aucs}
        rows.append({
            "model": name, "mode": mode, "input": list(x.shape), "fast_mode": fast_description(run.fast),
            "gradcam_s": g, "gradcam_x_fp32": g / ref_g, "di_s": d, "di_x_fp32": d / ref_d,
            "pearson_min": float(r.min()), "pearson_mean": float(r.mean()),
            **{f"{k}_abs_diff_mean": float(v.mean()) for k, v in delta.items()},
            **{f"{k}_abs_diff_max": float(v.max()) for k, v in delta.items()},
            **{f"{k}_fp32_mean": float(ref.aucs[k].mean()) for k in ref.aucs},
            "warmup_s": run.warmup_s, "compile_error": run.status.get("compile_error"),
        })
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | mode | Grad-CAM s | × fp32 | deletion + insertion s | × fp32 | map Pearson min / mean | "
             "\\|Δ deletion AUC\\| mean / max | \\|Δ insertion AUC\\| mean / max | warm-up s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        note = " (compile failed: eager)" if r["compile_error"] else ""
        lines.append(
            f"| {r['model']} | {r['mode']}{note} | {r['gradcam_s']:.3f} | {r['gradcam_x_fp32']:.2f} | {r['di_s']:.2f} | "
            f"{r['di_x_fp32']:.2f} | {r['pearson_min']:.4f} / {r['pearson_mean']:.4f} | "
            f"{r['deletion_auc_abs_diff_mean']:.4f} / {r['deletion_auc_abs_diff_max']:.4f} | "
            f"{r['insertion_auc_abs_diff_mean']:.4f} / {r['insertion_auc_abs_diff_max']:.4f} | {r['warmup_s']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    dev = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    print(f"# bench_fast_mode — device {dev}, CPU {cpu_model()}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load_average()}")
    print(f"modes: {', '.join(args.modes)} · images: batch {args.batch} · clips: {args.clips} × {args.frames} × "
          f"{args.clip_size}² · deletion/insertion {args.di_steps} steps, {args.di_batch} rows per forward · "
          f"median of {args.repeats} interleaved rounds")
    rows: list[dict] = []
    for name in args.models.split(","):
        rows += bench_model(name, args, device)
        print(f"\n## {name}: input {tuple(rows[-1]['input'])}\n")
        print(markdown([r for r in rows if r["model"] == name]))
        for r in rows:
            if r["model"] == name and r["compile_error"]:
                print(f"compile failed in mode {r['mode']}: {r['compile_error']}")
    print(f"\nload average at the end: {load_average()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
