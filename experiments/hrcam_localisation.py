"""Localisation of the HR-CAM maps with and without a threshold: low / high / refined on fresh synthetic shapes.

`python run.py experiment=benchmark_hrcam_shapes` scores the maps with pointing game, mask IoU at 0.5, energy on
the object and deletion / insertion. The IoU at 0.5 favours the refined map: it is 0.5·segment + 0.5·low, so
{merged >= 0.5} is essentially the binary segment, while a min-max normalised CAM has no such built-in cut.
This script adds two threshold-free IoUs, computed on the same images with the same metrics:

  * best-threshold IoU: per image, the best IoU of {map >= t} over t = 0.05, 0.10, ..., 0.95 (an oracle:
    an upper bound on what any fixed threshold gives), averaged over images;
  * IoU at the object's area: per image, the IoU of the |mask| highest-ranked pixels with the mask
    (no threshold and no oracle: it asks only how well the map ranks object pixels first).

Metrics use vizlab's classes with the benchmark's settings: PointingGame(tolerance 3), MaskIoU(0.5),
EnergyPointing, DeletionInsertion (vizlab's protocol: 100 steps, zeros / blur substrates, softmax AUC).
The explained class is the predicted one. Needs a trained model (the cache, or --checkpoint):

    python run.py task=train_half experiment=hrcam_shapes && python run.py task=train_full experiment=hrcam_shapes
    .venv/bin/python experiments/hrcam_localisation.py --samples 200 --threads 2 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from vizlab.data import build_dataset
from vizlab.methods import build
from vizlab.metrics import DeletionInsertion, EnergyPointing, MaskIoU, PointingGame
from vizlab.models import ZooModel, load_model

SCALED = {"hole_area": 21, "box_size": 3}  # the pipeline's pixel sizes scaled from 224 px to 64 px
VARIANTS = {
    "low-res CAM (`stage=low`)": ("low", None),
    "high-res CAM (`stage=high`)": ("high", None),
    "refined (`stage=refined`, hole area 21, box 3)": ("refined", SCALED),
    "refined, 224 px defaults (hole area 256, box 5)": ("refined", {}),
}
THRESHOLDS = torch.arange(1, 20, dtype=torch.float32) / 20  # 0.05 ... 0.95


def best_threshold_iou(saliency: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,) max over THRESHOLDS of IoU({saliency >= t}, mask). saliency (N, H, W) in [0, 1], masks (N, H, W)."""
    pred = saliency.flatten(1)[:, None] >= THRESHOLDS.to(saliency.device)[None, :, None]  # (N, T, HW)
    gt = masks.flatten(1).bool()[:, None]
    inter = (pred & gt).sum(2).float()
    union = (pred | gt).sum(2).float().clamp_min(1)
    return (inter / union).max(1).values


def area_iou(saliency: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,) IoU of the |mask| highest-ranked pixels with the mask (ties broken by position)."""
    flat, gt = saliency.flatten(1), masks.flatten(1).bool()
    out = torch.zeros(flat.shape[0])
    for i in range(flat.shape[0]):
        k = int(gt[i].sum())
        top = torch.zeros_like(gt[i])
        top[flat[i].topk(k).indices] = True
        out[i] = (top & gt[i]).sum() / (top | gt[i]).sum().clamp_min(1)
    return out


def score(model: ZooModel, stage: str, pipeline: dict[str, Any] | None, data: list[dict[str, Any]],
          batch: int, steps: int) -> dict[str, float]:
    """Mean of every metric over `data` for one HR-CAM variant, and the method's seconds per image."""
    method = build("hrcam", model, stage=stage, pipeline=pipeline, figures=False)
    pointing, iou, energy = PointingGame(tolerance=3), MaskIoU(threshold=0.5), EnergyPointing()
    delins = DeletionInsertion(model, steps=steps, batch_size=64)
    extra: dict[str, list[torch.Tensor]] = {"best_threshold_iou": [], "area_iou": []}
    seconds = 0.0
    for start in range(0, len(data), batch):
        part = data[start:start + batch]
        x = model.normalize(torch.stack([d["image"] for d in part]))
        masks = torch.stack([d["mask"] for d in part])
        begin = time.perf_counter()
        info = method(x, None, return_info=True)
        seconds += time.perf_counter() - begin
        for metric in (pointing, iou, energy):
            metric.update(info.saliency, masks)
        delins.update(x, info.saliency, info.target)
        extra["best_threshold_iou"].append(best_threshold_iou(info.saliency, masks))
        extra["area_iou"].append(area_iou(info.saliency, masks))
    out = {"pointing": float(pointing.compute()), "mask_iou_0.5": float(iou.compute()),
           "energy": float(energy.compute()), **{k: float(v) for k, v in delins.compute().items()},
           **{k: float(torch.cat(v).mean()) for k, v in extra.items()}, "seconds_per_image": seconds / len(data)}
    return out


def markdown(rows: dict[str, dict[str, float]]) -> str:
    head = ("| map | pointing | mask IoU ≥ 0.5 | best-threshold IoU | IoU at object area | energy on object "
            "| deletion AUC ↓ | insertion AUC ↑ |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [f"| {name} | {r['pointing']:.3f} | {r['mask_iou_0.5']:.3f} | {r['best_threshold_iou']:.3f} | "
             f"{r['area_iou']:.3f} | {r['energy']:.3f} | {r['deletion_auc']:.3f} | {r['insertion_auc']:.3f} |"
             for name, r in rows.items()]
    return "\n".join([head, *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1234, help="dataset seed (training used task.seed 0 / 1)")
    parser.add_argument("--checkpoint", default=None, help="an hrcam_full checkpoint; default: the cache")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--steps", type=int, default=100, help="deletion/insertion steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model("hrcam_full", checkpoint=args.checkpoint)
    dataset = build_dataset({"name": "synthetic_shapes", "num_samples": args.samples, "size": 64, "seed": args.seed},
                            model.info.input_size)
    data = [dataset[i] for i in range(len(dataset))]
    rows = {}
    for name, (stage, pipeline) in VARIANTS.items():
        rows[name] = score(model, stage, pipeline, data, args.batch, args.steps)
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in rows[name].items()), flush=True)
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
