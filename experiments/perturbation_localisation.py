"""Localisation of every method on vizlab's synthetic sets, and the extremal family against its oracle.

For shapes (64², shapes_cnn) and motion clips (`--frames` × 48², default 8; on motion_cnn, or on
motion_cnn16 at 16 frames — `--motion-model` picks another), per method: pointing (peak =
`max_set`, the centre of the maximal set, 3 px), mask IoU (saliency ≥ 0.5), energy on the object,
object recall at area 0.1 (ties at random), and for the extremal family the objective reached vs the
oracle's (`optimality_check`: mean objective of both, share of samples within 5 %). 3D-EP adds
recall over the frames it keeps. `--restarts K` runs the extremal family best of K starts. With
`--figures DIR`, one optimised-vs-oracle figure per method (first sample) is written there.

Run (a few minutes on 2 CPU cores at the defaults):
    .venv/bin/python experiments/perturbation_localisation.py --images 8 --clips 6 --video-iterations 300
    .venv/bin/python experiments/perturbation_localisation.py --images 0 --clips 4 --frames 16 --methods gradcam,ep2d,step
16-frame clips need motion_cnn16 cached (`python run.py task=train model=motion_cnn16`, ~3 minutes).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import vizlab
from vizlab.methods import build
from vizlab.methods.perturbation.oracle import optimality_check, oracle_figure
from vizlab.metrics import energy_pointing, kept_frames, mask_iou, object_recall, pointing_hits
from vizlab.viz.overlay import save_png

PERTURBATION = ("extremal", "ep2d", "ep3d", "step")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--clips", type=int, default=6)
    p.add_argument("--image-iterations", type=int, default=None, help="image EP iterations (default: its 800)")
    p.add_argument("--video-iterations", type=int, default=300, help="2D/3D-EP and STEP iterations (seed: 2000)")
    p.add_argument("--frames", type=int, default=8, help="frames per motion clip")
    p.add_argument("--restarts", type=int, default=1, help="starts per mask for the extremal family (default 1)")
    p.add_argument("--motion-model", default=None,
                   help="model for the motion clips (default: motion_cnn16 at 16 frames, else motion_cnn)")
    p.add_argument("--methods", default=None,
                   help="comma-separated subset of gradcam, extremal, ep2d, ep3d, step (default: all)")
    p.add_argument("--figures", type=Path, default=None, help="folder for the optimised-vs-oracle figures")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def data(kind: str, n: int, frames: int = 8, motion_model: str | None = None):
    if kind == "shapes":
        from vizlab.data.synthetic_shapes import SyntheticShapes
        model, ds = vizlab.load_model("shapes_cnn"), SyntheticShapes(n, seed=777)
    else:
        from vizlab.data.synthetic_motion import SyntheticMotion
        name = motion_model or ("motion_cnn16" if frames == 16 else "motion_cnn")
        model, ds = vizlab.load_model(name), SyntheticMotion(n, frames=frames, seed=5)
    batch = next(iter(DataLoader(ds, batch_size=n)))
    return model, batch["image"], model.normalize(batch["image"]), batch["label"], batch["mask"]


def scores(saliency: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    return {"pointing": float(pointing_hits(saliency, masks, 3, peak="max_set").mean()),
            "iou": float(mask_iou(saliency, masks).mean()),
            "energy": float(energy_pointing(saliency, masks).mean()),
            "recall": float(object_recall(saliency, masks, 0.1).nanmean())}


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)
    print(f"load average {os.getloadavg()[0]:.2f} (the machine may be shared: timings are indicative)")
    rows = []
    wanted = None if args.methods is None else set(args.methods.split(","))
    for kind, methods, n in (("shapes", ("gradcam", "extremal"), args.images),
                             ("motion", ("gradcam", "ep2d", "ep3d", "step"), args.clips)):
        methods = tuple(m for m in methods if wanted is None or m in wanted)
        if n < 1 or not methods:  # --images 0 / --clips 0 skip a data set
            continue
        model, images, x, y, masks = data(kind, n, args.frames, args.motion_model)
        for name in methods:
            options = {}
            if name in PERTURBATION:
                options["progress"] = False
                iters = args.image_iterations if name == "extremal" else args.video_iterations
                if iters is not None:
                    options["max_iter"] = iters
                options["restarts"] = args.restarts
            start = time.perf_counter()
            method = build(name, model, **options)
            info = method(x, y, return_info=True)
            label = kind if kind == "shapes" else f"motion {args.frames}f ({model.info.name})"
            shown = f"{name} ×{args.restarts}" if name in PERTURBATION and args.restarts > 1 else name
            row = {"data": label, "method": shown, **scores(info.saliency, masks),
                   "seconds": time.perf_counter() - start}
            if name == "ep3d":
                kept = kept_frames(info.saliency, 0.5)
                row["recall_kept"] = float(object_recall(info.saliency, masks, 0.1, frames=kept).nanmean())
            if name in PERTURBATION:
                report = optimality_check(method, x, y, masks, info=info)
                summary = report.summary()
                row.update(objective=summary["optimised"], oracle=summary["oracle"], passed=summary["fraction"])
                if args.figures is not None:
                    picture = oracle_figure(images[0], report, info.extras["masks"], index=0)
                    save_png(args.figures / f"{kind}_{name}_oracle.png", picture)
            rows.append(row)
            print(row, flush=True)
    print()
    print("| data | method | pointing (max set, 3 px) | IoU (≥ 0.5) | energy | recall @ 0.1 | recall, kept frames "
          "| objective / oracle's | share ≥ oracle (5 %) | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        objective = f"{r['objective']:.3g} / {r['oracle']:.3g}" if "objective" in r else "—"
        passed = f"{r['passed']:.2f}" if "passed" in r else "—"
        kept = f"{r['recall_kept']:.2f}" if "recall_kept" in r else "—"
        print(f"| {r['data']} | {r['method']} | {r['pointing']:.2f} | {r['iou']:.2f} | {r['energy']:.2f} | "
              f"{r['recall']:.2f} | {kept} | {objective} | {passed} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
