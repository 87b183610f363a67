"""Benchmark the HR-CAM refinement pipeline (`vizlab.hrcam.refine`): seconds per image, and its connected-set
back-ends (scipy labelling per image vs batched torch propagation) for region growing and hole filling.

Inputs: the skimage sample photos at `size`² (batch `batch`), a 14×14 low CAM (a Gaussian bump at a random
place plus noise) and a high CAM (the photo's gradient magnitude weighted by the upsampled low CAM), so that
the ROI, the bounds and the grown regions look like real ones rather than noise.

`time_pipeline(batch, size, repeats)` is importable (`from bench_hrcam_pipeline import time_pipeline` with
experiments/ on sys.path) for other benchmarks, e.g. the HR-CAM training benchmark.

CPU timings need an otherwise idle machine: the script prints the 1-minute load average.

Run:
    .venv/bin/python experiments/bench_hrcam_pipeline.py --batch 8 --size 224 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model, load_average, load_images, pick_device, time_call  # noqa: E402

from vizlab.hrcam import pipeline as P  # noqa: E402
from vizlab.hrcam.regions import fill_holes, grow_from_seeds  # noqa: E402


def synthetic_cams(batch: int, size: int, device: torch.device | str = "cpu", low_size: int = 14,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image (N,3,S,S) in [0,1], low (N,14,14), high (N,S,S)): CAM-like maps over real photos."""
    gen = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    image = load_images(batch, size, torch.device("cpu"))
    yy, xx = torch.meshgrid(torch.arange(low_size), torch.arange(low_size), indexing="ij")
    centres = torch.rand(batch, 2, generator=gen) * (low_size - 4) + 2
    d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    low = 4 * torch.exp(-d2 / (2 * 2.5**2)) + 0.3 * torch.randn(batch, low_size, low_size, generator=gen) - 0.5
    gray = image.mean(1, keepdim=True)
    gx = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), torch.tensor([[[[-1.0, 0.0, 1.0]]]]).expand(1, 1, 3, 3))
    gy = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"),
                  torch.tensor([[[[-1.0], [0.0], [1.0]]]]).expand(1, 1, 3, 3))
    up = F.interpolate(low[:, None], size=(size, size), mode="bilinear", align_corners=False).clamp(min=0)
    high = (torch.sqrt(gx**2 + gy**2) * up + 0.2 * up)[:, 0]
    return image.to(device), low.to(device), high.to(device)


def _time(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of `repeats` calls after one warm-up."""
    return time_call(fn, repeats, 1, device)


def time_pipeline(batch: int = 8, size: int = 224, repeats: int = 5, params: P.PipelineParams | None = None,
                  device: str | torch.device = "cpu") -> float:
    """Seconds per image of `refine` on a (batch, 3, size, size) batch: median of `repeats` runs / batch."""
    dev = torch.device(device)
    image, low, high = synthetic_cams(batch, size, dev)
    return _time(lambda: P.refine(image, low, high, params), repeats, dev) / batch


def time_regions(batch: int = 8, size: int = 224, repeats: int = 5,
                 device: str | torch.device = "cpu") -> dict[str, float]:
    """Seconds per image of region growing and hole filling with each back-end, on the pipeline's own masks."""
    dev = torch.device(device)
    image, low, high = synthetic_cams(batch, size, dev)
    steps = P.refine(image, low, high)
    grad, bounds, seeds = steps["edges"], steps["bounds"], steps["focal_points"]
    inside = (grad >= bounds[:, :1, None]) & (grad <= bounds[:, 1:, None])
    mask = (steps["segmented"] > 0) | steps["roi_edges"]
    out = {}
    for backend in ("scipy", "torch"):
        out[f"grow/{backend}"] = _time(lambda b=backend: grow_from_seeds(inside, seeds, b), repeats, dev) / batch
        out[f"holes/{backend}"] = _time(lambda b=backend: fill_holes(mask, 256, False, b), repeats, dev) / batch
    grown = {b: grow_from_seeds(inside, seeds, b) for b in ("scipy", "torch")}
    filled = {b: fill_holes(mask, 256, False, b) for b in ("scipy", "torch")}
    out["backends_agree"] = float(torch.equal(grown["scipy"], grown["torch"]) and
                                  torch.equal(filled["scipy"], filled["torch"]))
    return out


def time_steps(batch: int = 8, size: int = 224, repeats: int = 5,
               device: str | torch.device = "cpu") -> dict[str, float]:
    """Seconds per image of each pipeline step (default parameters)."""
    dev = torch.device(device)
    image, low, high = synthetic_cams(batch, size, dev)
    prm = P.PipelineParams()
    s = P.refine(image, low, high, prm)
    grad, roi, bounds, seeds, low_up = s["edges"], s["roi"], s["bounds"], s["focal_points"], s["low_resized"]
    steps = {
        "1 blur": lambda: P.box_blur(high),
        "2 sobel + minmax": lambda: P.gradient_map(s["blurred"]),
        "3 resize + roi": lambda: P.region_of_interest(P.resize_low(low, (size, size))),
        "4 bounds": lambda: P.growing_bounds(grad, roi),
        "5 focal points": lambda: P.focal_points(low, low_up, prm),
        "6 region growing": lambda: P.region_growing(grad, seeds, bounds),
        "7-8 full segment": lambda: P.full_segment(s["segmented"], grad, roi, bounds[:, 1]),
        "9 merge": lambda: P.merge_maps(s["full_segment"], low, low_up),
        "10 crop": lambda: P.crop_image(image, P.keep_mask(s["merged"])),
    }
    return {name: _time(fn, repeats, dev) / batch for name, fn in steps.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(f"# HR-CAM refinement pipeline, batch {args.batch}, {args.size}², device {device}, "
          f"{args.threads} torch threads, {cpu_model()}, torch {torch.__version__}")
    print(f"# load average before: {load_average()}")
    print("\n| configuration | ms / image |\n|---|---|")
    for name, prm in (("default (vizlab fixes)", None), ("strict_original", P.PipelineParams(strict_original=True)),
                      ("focal_scope=local", P.PipelineParams(focal_scope="local")),
                      ("backend=torch", P.PipelineParams(backend="torch"))):
        print(f"| {name} | {1000 * time_pipeline(args.batch, args.size, args.repeats, prm, device):.1f} |")
    print("\n| step | ms / image |\n|---|---|")
    for name, seconds in time_steps(args.batch, args.size, args.repeats, device).items():
        print(f"| {name} | {1000 * seconds:.2f} |")
    regions = time_regions(args.batch, args.size, args.repeats, device)
    print("\n| connected-set step | scipy ms / image | torch ms / image |\n|---|---|---|")
    for step in ("grow", "holes"):
        print(f"| {step} | {1000 * regions[f'{step}/scipy']:.2f} | {1000 * regions[f'{step}/torch']:.2f} |")
    print(f"\nscipy and torch back-ends give identical masks: {bool(regions['backends_agree'])}")
    print(f"# load average after: {load_average()}")


if __name__ == "__main__":
    main()
