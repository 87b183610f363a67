"""Benchmark HR-CAM training and inference: what the expansion network costs, and the refinement pipeline's
time per image against the network's forward pass.

Training (the two stages of task=train_half / task=train_full, same data, same batch, same optimiser):
  * half step: a HalfModel training step (forward, cross-entropy, backward through the whole classifier,
    Adadelta) — stage 1;
  * full step: a FullModel stage-2 step (forward through the frozen classifier and the expansion path,
    MSE reconstruction + CE, backward through the expansion path only, Adadelta on its parameters).
  "full / half" is the price of the expansion network in training images per second.
Inference (no gradients): HalfModel forward vs FullModel forward (the latter gives A_high too), and the
refinement pipeline (`vizlab.hrcam.pipeline.refine`, if present) on the FullModel's own low/high CAMs of
the same batch, per image, against the FullModel forward per image.

Configurations: "shapes" (the experiment=hrcam_shapes CPU variant at 64 px: growth 8, 3 layers per
block, 16 initial filters, 4 classes) and "paper" (the spec's 224 px network, 398 classes). Inputs are
the skimage sample photos (bench_common.load_images), resized; weights are random (timing only).
CPU timings are sensitive to other processes: the load average is printed before and after; each
number is the fastest of --repeats runs after a warm-up. Training on CPU uses channels_last, as the
training tasks do (2-3x faster DenseNet convolutions there).

Run:
    make bench                                                   # both configurations
    .venv/bin/python experiments/bench_hrcam.py --configs shapes --batch 32 --threads 2
    .venv/bin/python experiments/bench_hrcam.py --configs paper --paper-batch 16 --device cuda
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_common import PRECISION_CHOICES, cpu_model, load_average, load_images, pick_device, time_call

from vizlab.models.hrcam import FullModel, HalfModel, HRCAMConfig, model_memory_usage, transfer_half_weights

CONFIGS = {
    "shapes": HRCAMConfig(num_classes=4, input_size=64, growth=8, layers_per_block=3, blocks=4, init_filters=16,
                          aux_channels=8),
    "paper": HRCAMConfig(),
}


def best_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Fastest of `repeats` calls after one warm-up."""
    return time_call(fn, repeats, 1, device, statistic=min)


class Precision:
    """Lightning's mixed precision for a hand-written step: autocast around forward + loss; float16
    also scales the loss (torch.amp.GradScaler), as Lightning's "16-mixed" does."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.dtype = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}[precision]
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype is torch.float16 else None

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)


def train_step(net: HalfModel, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, stage: str,
               amp: Precision) -> None:
    with amp.autocast():
        out = net.features(x)
        loss = F.cross_entropy(out["logits"].float(), y)
        if stage == "full":
            loss = loss + F.mse_loss(out["reconstruction"].float(), x)
    opt.zero_grad(set_to_none=True)
    if amp.scaler is None:
        loss.backward()
        opt.step()
    else:
        amp.scaler.scale(loss).backward()
        amp.scaler.step(opt)
        amp.scaler.update()


def bench_config(name: str, cfg: HRCAMConfig, batch: int, repeats: int, device: torch.device,
                 precision: str = "32", channels_last: bool | None = None) -> dict[str, float]:
    """channels_last None: on CPU only (as the training tasks default)."""
    torch.manual_seed(0)
    amp = Precision(precision, device)
    x = (load_images(batch, cfg.input_size, device) - 0.5) / 0.5
    y = torch.randint(0, cfg.num_classes, (batch,), device=device)
    channels_last = device.type == "cpu" if channels_last is None else channels_last
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    half = HalfModel(cfg).to(device)
    full = FullModel(cfg).to(device)
    transfer_half_weights(half, full)
    full.freeze_classifier(True)
    if channels_last:
        half.to(memory_format=torch.channels_last)
        full.to(memory_format=torch.channels_last)
    half.train()
    full.train()
    opt_half = torch.optim.Adadelta(half.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    opt_full = torch.optim.Adadelta(full.expansion_parameters(), lr=1.0, rho=0.95, eps=1e-7)
    r: dict[str, float] = {}
    r["train_half"] = best_time(lambda: train_step(half, opt_half, x, y, "half", amp), repeats, device)
    r["train_full"] = best_time(lambda: train_step(full, opt_full, x, y, "full", amp), repeats, device)
    half.eval()
    full.eval()
    with torch.no_grad(), amp.autocast():
        r["fwd_half"] = best_time(lambda: half(x), repeats, device)
        r["fwd_full"] = best_time(lambda: full.features(x), repeats, device)
        cams = full.generate_cams(x)
    try:
        from vizlab.hrcam.pipeline import refine
    except ImportError:
        refine = None
    if refine is not None:
        image = (x.float() * 0.5 + 0.5).contiguous()
        low, high = cams["low"].float(), cams["high"].float()  # the pipeline runs in float32
        r["pipeline"] = best_time(lambda: refine(image, low, high), repeats, device)
    r["mem_half_gib"] = model_memory_usage(half, batch).total_gib
    r["mem_full_gib"] = model_memory_usage(full, batch).total_gib
    r["params_half"] = sum(p.numel() for p in half.parameters())
    r["params_full"] = sum(p.numel() for p in full.parameters())
    return r


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="shapes,paper", help="comma-separated: shapes, paper")
    ap.add_argument("--batch", type=int, default=32, help="batch of the shapes configuration")
    ap.add_argument("--paper-batch", type=int, default=4, help="batch of the paper configuration (the original: 16)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="32", choices=PRECISION_CHOICES,
                    help="mixed precision of the training steps and forwards (16-mixed with a GradScaler)")
    ap.add_argument("--channels-last", action="store_true", help="channels-last on any device (default: CPU only)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(f"HR-CAM training / inference benchmark on {device} ({cpu_model()}, {args.threads} threads), "
          f"torch {torch.__version__}; precision {args.precision}; load average {load_average()}")
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        batch = args.batch if name == "shapes" else args.paper_batch
        r = bench_config(name, cfg, batch, args.repeats, device, args.precision, True if args.channels_last else None)
        per = {k: v / batch for k, v in r.items() if not k.startswith(("mem", "params"))}
        print(f"\n[{name}] {cfg.input_size}² input, growth {cfg.growth}, {cfg.layers_per_block} layers/block, "
              f"{cfg.num_classes} classes, batch {batch}; parameters: half {r['params_half']:,}, "
              f"full {r['params_full']:,} ({r['params_full'] - r['params_half']:,} trained in stage 2)")
        print(f"  {'':34s} {'ms / image':>10s} {'images / s':>11s}")
        rows = [("train stage 1 (HalfModel, all)", "train_half"), ("train stage 2 (FullModel, expansion)", "train_full"),
                ("forward HalfModel", "fwd_half"), ("forward FullModel (+ A_high)", "fwd_full")]
        if "pipeline" in per:
            rows.append(("refinement pipeline (refine)", "pipeline"))
        for label, key in rows:
            print(f"  {label:34s} {per[key] * 1e3:10.2f} {1 / per[key]:11.1f}")
        print(f"  expansion network: stage-2 step / stage-1 step = {r['train_full'] / r['train_half']:.2f}x; "
              f"full / half forward = {r['fwd_full'] / r['fwd_half']:.2f}x")
        if "pipeline" in per:
            print(f"  pipeline / FullModel forward = {r['pipeline'] / r['fwd_full']:.2f}x per image")
        print(f"  memory estimate (parameters + activations, batch {batch}): half {r['mem_half_gib']:.2f} GiB, "
              f"full {r['mem_full_gib']:.2f} GiB")
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
