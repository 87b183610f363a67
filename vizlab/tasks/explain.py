"""task=explain: run one method over a dataset; write overlays, raw maps and results.json.

Everything that can be checked (model, checkpoint, layer, method options, target, dataset) is
checked before the first batch; outputs are staged and moved into the run directory at the
end, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from vizlab.data import build_dataset
from vizlab.errors import ConfigError
from vizlab.io import write_json_atomic
from vizlab.methods import build
from vizlab.models import ZooModel, load_model
from vizlab.tasks.common import resolve_device
from vizlab.viz import add_caption, clip_overlays, frame_strip, overlay, save_gif, save_png

STAGING = ".staging"


def method_options(method_cfg: DictConfig) -> dict[str, Any]:
    """The method config minus its `name`, as plain Python values."""
    opts = OmegaConf.to_container(method_cfg, resolve=True)
    opts.pop("name", None)
    return opts


def check_target(target: Any, model: ZooModel) -> None:
    """task.target must be null, "label" or a class index in range."""
    if target is None or target == "label":
        return
    if isinstance(target, bool) or not isinstance(target, int):
        raise ConfigError(f"task.target must be null (predicted class), 'label' or a class index; got {target!r}.")
    k = model.info.num_classes
    if not 0 <= target < k:
        raise ConfigError(f"task.target={target} is out of range: {model.info.name} has {k} classes "
                          f"(valid 0..{k - 1}); use task.target=null for the predicted class.")


def batch_targets(target: Any, labels: torch.Tensor, num_classes: int) -> torch.Tensor | int | None:
    if target != "label":
        return target
    if (labels < 0).any() or (labels >= num_classes).any():
        raise ConfigError("task.target=label needs every sample to have a label within the model's classes; "
                          "this dataset has unlabelled or out-of-range samples.")
    return labels


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "sample"


def write_visuals(stage: Path, index: int, name: str, image: torch.Tensor, saliency: torch.Tensor,
                  caption: str, power: float) -> list[str]:
    """Write the overlay(s) of one sample; return paths relative to the run directory."""
    stem = f"{index:05d}_{safe_name(name)}"
    if saliency.dim() == 2:
        picture = add_caption(overlay(image.cpu(), saliency, power), caption)
        save_png(stage / "heatmaps" / f"{stem}.png", picture)
        return [f"heatmaps/{stem}.png"]
    frames = clip_overlays(image.cpu(), saliency, power)
    save_png(stage / "heatmaps" / f"{stem}_strip.png", add_caption(frame_strip(frames), caption))
    save_gif(stage / "heatmaps" / f"{stem}.gif", frames)
    return [f"heatmaps/{stem}_strip.png", f"heatmaps/{stem}.gif"]


def run_explain(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Run task=explain with config `cfg`, writing into `out_dir`. Returns the results dict."""
    task = cfg.task
    device = resolve_device(cfg.hardware)
    model = load_model(cfg.model.name, checkpoint=cfg.model.get("checkpoint"),
                       num_classes=cfg.model.get("num_classes"), pretrained=cfg.model.get("pretrained"),
                       device=device)
    options = method_options(cfg.method)
    method = build(cfg.method.name, model, **options)
    check_target(task.get("target"), model)
    dataset = build_dataset(cfg.dataset, model.info.input_size, model.info.is_video)
    if task.batch_size < 1:
        raise ConfigError(f"task.batch_size must be >= 1, got {task.batch_size}.")
    limit = task.get("max_samples")
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    loader = DataLoader(dataset, batch_size=task.batch_size, shuffle=False, num_workers=task.get("num_workers", 0))

    stage = out_dir / STAGING
    shutil.rmtree(stage, ignore_errors=True)
    samples: list[dict[str, Any]] = []
    total = 0.0
    index = 0
    for batch in tqdm(loader, desc=f"{cfg.method.name} on {model.info.name}", unit="batch"):
        images = batch["image"].to(device)
        x = model.normalize(images)
        target = batch_targets(task.get("target"), batch["label"].to(device), model.info.num_classes)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        info = method(x, target, return_info=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        total += elapsed
        probs = info.logits.float().softmax(1)
        for i in range(x.shape[0]):
            t, pred = int(info.target[i]), int(probs[i].argmax())
            record = {
                "index": index, "name": batch["name"][i], "label": int(batch["label"][i]),
                "target": t, "target_name": model.class_name(t), "target_prob": float(probs[i, t]),
                "predicted": pred, "predicted_name": model.class_name(pred), "predicted_prob": float(probs[i, pred]),
                "seconds": elapsed / x.shape[0], "files": [],
            }
            caption = f"{cfg.method.name}: {t} {model.class_name(t)} (p={record['target_prob']:.2f})"
            if task.save_overlays:
                record["files"] += write_visuals(stage, index, batch["name"][i], images[i], info.saliency[i],
                                                 caption, task.get("overlay_power", 0.8))
            if task.save_maps:
                stem = f"maps/{index:05d}_{safe_name(batch['name'][i])}"
                (stage / "maps").mkdir(parents=True, exist_ok=True)
                np.save(stage / f"{stem}_saliency.npy", info.saliency[i].float().cpu().numpy())
                np.save(stage / f"{stem}_raw.npy", info.raw[i].float().cpu().numpy())
                record["files"] += [f"{stem}_saliency.npy", f"{stem}_raw.npy"]
            samples.append(record)
            index += 1

    results = {
        "task": "explain",
        "model": {"name": model.info.name, "checkpoint": cfg.model.get("checkpoint"),
                  "num_classes": model.info.num_classes, "input_size": model.info.input_size},
        "method": {"name": cfg.method.name, **options, "resolved": repr(method)},
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "device": str(device),
        "summary": {"num_samples": len(samples), "seconds_total": total,
                    "seconds_per_sample": total / max(1, len(samples))},
        "samples": samples,
    }
    for sub in ("heatmaps", "maps"):
        if (stage / sub).exists():
            shutil.rmtree(out_dir / sub, ignore_errors=True)
            (stage / sub).rename(out_dir / sub)
    shutil.rmtree(stage, ignore_errors=True)
    write_json_atomic(out_dir / "results.json", results)
    return results
