"""Benchmark vizlab's class-agnostic feature visualisation (task=featvis) against the limit.

Speed. Stage B optimises K images, one per cluster. vizlab runs all K as one batch (one forward
and one backward of K images per iteration); the original's loop structure allows nothing else
either, but a per-cluster re-implementation would run K optimisations of one image. Timed here,
in one process on the same model, images and clusters:
- batched: `generate` on the K facets (every regulariser of the original on: mask, blur and TV
  every 10 iterations, brightness, canvas crops);
- one at a time: K runs of `generate` on one facet each;
- batched without the blur and TV steps (what the periodic regularisers cost);
- the limit (design.md): iterations × (forward + backward of the same K-image batch) with the
  forward stopped at the target layer (what the method needs), parameters frozen, gradient to
  the input only; and, for reference, the same through the whole network.
Ratios: batched / one-at-a-time speed-up, and the limit's time / batched time (1 = no overhead).

Quality (--compare-param, instead of the timing): pixel space (the original's SGD with its schedules and regularisers)
against the decorrelated Fourier parametrisation with random jitter/zoom/rotation (Adam, lr 0.05),
at equal iterations, on the same model, clusters and target channels: the mean activation of each
cluster's target channels on its generated image, and its ratio to the real members'.

Run:
    make bench
    .venv/bin/python experiments/bench_featvis.py --clusters 4 --size 224 --iterations 20
    .venv/bin/python experiments/bench_featvis.py --compare-param --iterations 200 --size 128
CPU timings need an idle machine; the script prints the load average.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from bench_common import cpu_model, load_average, pick_device, synchronize

import vizlab
from vizlab.data import SampleImages
from vizlab.featvis import FeatureTaps, Octave, encode, find_facets, generate
from vizlab.featvis.optimise import FourierOptions, GenerateOptions, target_activation
from vizlab.methods.base import frozen_parameters

PHOTOS = ["chelsea", "coffee", "astronaut", "rocket", "cat", "hubble_deep_field"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--layer", default="blocks.6", help="target layer")
    p.add_argument("--clusters", type=int, default=4)
    p.add_argument("--channels", type=int, default=50, help="target channels per cluster")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--compare-param", action="store_true",
                   help="compare pixel vs fft target activation instead of timing")
    return p.parse_args(argv)


def facets_for(model, taps, size: int, clusters: int, channels: int, device: torch.device):
    ds = SampleImages(size, PHOTOS)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    images = torch.cat([images, images.flip(-1)])                      # 12 images: the photos and their mirrors
    names = ds.names + [f"{n}_mirror" for n in ds.names]
    feats = encode(taps, images, model.normalize, device)
    return find_facets(feats, images, clusters, channels, members=3, embedding="pca", names=names), images


class Clock:
    """Wall and process CPU seconds of a block (CPU time is the steadier measure on a loaded machine)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def limit_seconds(model, taps, x01: torch.Tensor, iterations: int, truncate: bool, device) -> Clock:
    """iterations × (forward + backward to the input) of the batch x01."""
    x = model.normalize(x01.to(device)).detach().requires_grad_(True)
    with taps.attached(truncate=truncate):
        feats, pen = taps.run(x)                                       # warm-up
        (feats.mean() + (pen.abs().mean() if pen is not None else 0)).backward()
        synchronize(device)
        with Clock() as clock:
            for _ in range(iterations):
                x.grad = None
                if truncate:
                    feats, pen = taps.run(x)
                    loss = feats.mean() + (pen.abs().mean() if pen is not None else 0)
                else:
                    loss = model(x).sum()
                loss.backward()
            synchronize(device)
    return clock


def timed_generate(taps, facets, octaves, iterations, model, options) -> tuple[Clock, object]:
    with Clock() as clock:
        gen = generate(taps, facets, octaves, iterations, model.normalize, options)
        synchronize(facets.targets.device)
    return clock, gen


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, torch threads {args.threads}, device {device}, "
          f"load average {load_average()}")
    if os.getloadavg()[0] > 1:
        print("warning: the machine is loaded; absolute times are inflated, ratios inside this run still hold")
    model = vizlab.load_model(args.model, device=device)
    with frozen_parameters(model):
        probe = model.normalize(torch.rand(1, 3, args.size, args.size, device=device))
        taps = FeatureTaps(model, args.layer).probe(probe)
        facets, _ = facets_for(model, taps, args.size, args.clusters, args.channels, device)
        k, n = facets.clusters, args.iterations
        octaves = [Octave(iterations=n, window_step=max(1, n // 2))]   # the demo octave, one canvas crop midway
        options = GenerateOptions()
        print(f"{args.model} {args.layer} (penalty: input of {taps.penalty_name}), {k} clusters, "
              f"{args.size}² images, {n} iterations")
        if args.compare_param:
            compare_param(taps, facets, model, n)
            return
        warm = max(options.blur_every, options.denoise_every)  # warm-up: every step kind once, both batch sizes
        for subset in (facets, facets.subset([0])):
            generate(taps, subset, [Octave(iterations=warm)], warm, model.normalize, options)
        batched, _ = timed_generate(taps, facets, octaves, n, model, options)
        bare = GenerateOptions(blur_every=n + 1, denoise_every=n + 1)     # no blur, no TV: the loop alone
        no_reg, _ = timed_generate(taps, facets, octaves, n, model, bare)
        singles = [timed_generate(taps, facets.subset([c]), octaves, n, model, options)[0] for c in range(k)]
        single = Clock()
        single.wall, single.cpu = sum(c.wall for c in singles), sum(c.cpu for c in singles)
        limit = limit_seconds(model, taps, facets.images, n, True, device)
        full = limit_seconds(model, taps, facets.images, n, False, device)
        print(f"{'run':<46}{'wall s':>9}{'it/s':>8}{'CPU s':>9}")
        for name, clock in ((f"batched: {k} clusters in one batch", batched),
                            ("batched, without the blur and TV steps", no_reg),
                            (f"one cluster at a time ({k} runs)", single),
                            (f"limit: fwd to {args.layer} + bwd, batch {k}", limit),
                            (f"reference: full-network fwd + bwd, batch {k}", full)):
            print(f"{name:<46}{clock.wall:>9.2f}{n / clock.wall:>8.2f}{clock.cpu:>9.2f}")
        for what in ("wall", "cpu"):
            b, s1, lim = getattr(batched, what), getattr(single, what), getattr(limit, what)
            print(f"{what:>4}: batched is {s1 / b:.2f}x faster than one cluster at a time and takes {b / lim:.2f}x "
                  "the limit's time")


def compare_param(taps, facets, model, iterations: int) -> None:
    """Pixel vs Fourier parametrisation at equal iterations: target-channel activation."""
    device = facets.targets.device
    ch = facets.channels.float()
    per_image = facets.features @ ch.T / ch.sum(1)
    members = torch.stack([per_image[torch.as_tensor(facets.members[c]), c].mean() for c in range(facets.clusters)])
    print(f"\npixel vs fft, {iterations} iterations each, same clusters and channels "
          "(mean target-channel activation; ratio to the real members)")
    print(f"{'param':<8}" + "".join(f"{f'cluster {c}':>18}" for c in range(facets.clusters)) + f"{'mean':>10}")
    print(f"{'members':<8}" + "".join(f"{v:>18.3f}" for v in members.tolist()) + f"{members.mean():>10.3f}")
    results = {}
    for param in ("pixel", "fft"):
        opts = GenerateOptions(param=param, fft=FourierOptions())
        clock, gen = timed_generate(taps, facets, [Octave(iterations=iterations)], iterations, model, opts)
        acts = target_activation(encode(taps, gen.images, model.normalize, device), facets.channels)
        results[param] = acts
        cells = "".join(f"{f'{a:.3f} ({a / m:.2f}x)':>18}" for a, m in zip(acts.tolist(), members.tolist(), strict=True))
        print(f"{param:<8}{cells}{acts.mean():>10.3f}   {clock.wall:.1f} s")
    better = "fft" if results["fft"].mean() > results["pixel"].mean() else "pixel"
    wins = int((results["fft"] > results["pixel"]).sum())
    print(f"higher mean target activation: {better} (fft higher on {wins} of {facets.clusters} clusters)")


if __name__ == "__main__":
    main()
