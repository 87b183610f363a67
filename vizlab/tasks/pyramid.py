"""task=pyramid: Class Feature Pyramids over a dataset — per sample the kernel tree as JSON (nested and
flat), a saliency tube per node (strip + GIF for clips), the pyramid figure and the graph page;
results.json with every tree's size and timings; all logged to the configured logger.

    python run.py task=pyramid model=motion_cnn dataset=synthetic_motion
    python run.py task=pyramid model=r3d_18 model.checkpoint=r3d_18.pth dataset=video_folder dataset.root=DIR \\
        method.threshold=0.5 method.depth=3 task.max_tubes=4

Options of the pyramid itself are method=pyramid's (method.threshold, method.depth, method.top_k,
method.strict_original, method.weighted); task=pyramid selects it. Files go to a staging folder and
are moved into place at the end, results.json last (atomically), as in task=explain.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Subset

from vizlab.data import build_dataset
from vizlab.errors import ConfigError, InputError
from vizlab.io import write_json_atomic
from vizlab.lit.explain_data import IndexedDataset, SkipEmptyBatches, collate_loaded
from vizlab.lit.explain_module import batch_targets
from vizlab.loggers import build_loggers, finish_loggers, log_media
from vizlab.methods import build
from vizlab.models import load_model
from vizlab.progress import progress_bar
from vizlab.pyramid.core import PyramidResult
from vizlab.pyramid.output import write_pyramid
from vizlab.tasks.common import positive_int, resolve_device
from vizlab.tasks.explain import STAGING, check_target, completed, config_hash, method_options, skipped_samples
from vizlab.viz.outputs import SampleWriter


def sample_record(batch: dict[str, Any], i: int, result: PyramidResult, model, files: dict[str, Any],
                  seconds: dict[str, float]) -> dict[str, Any]:
    """One sample's entry of results.json (the explain loop's fields, so `log_media` can log it)."""
    probs = result.logits[i].float().softmax(0)
    t, pred = int(result.target[i]), int(probs.argmax())
    tree = result.tree(i)
    sizes = tree.level_sizes()
    n = result.num_clips
    ms = {f"{k}_ms": 1000 * v / n for k, v in seconds.items() if k != "trace"}
    return {
        "index": int(batch["index"][i]), "name": batch["name"][i], "label": int(batch["label"][i]),
        "target": t, "target_name": model.class_name(t), "target_prob": float(probs[t]),
        "predicted": pred, "predicted_name": model.class_name(pred), "predicted_prob": float(probs[pred]),
        "seconds": sum(seconds.values()) / n, "metrics": {},
        "details": {"nodes": 1 + sum(sizes), "level_sizes": sizes, **ms},
        "files": [*(f for f in files["tubes"] if "/node_0000_" in f), files["nested"], files["graph"],
                  *([files["html"]] if "html" in files else []), files["figure"]],  # the class tube first (log_media)
        "figures": {"pyramid": files["figure"]}, "pyramid": files,
    }


def summarise(samples: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    n = max(1, len(samples))
    mean = {key: sum(s["details"][key] for s in samples) / n for key in ("forward_ms", "backstep_ms", "tubes_ms")}
    return {"num_samples": len(samples), "wall_seconds": wall,
            "seconds_per_sample": sum(s["seconds"] for s in samples) / n,
            **{f"{k}_per_sample": v for k, v in mean.items()},
            "backstep_over_forward": mean["backstep_ms"] / max(mean["forward_ms"], 1e-9),
            "nodes_mean": sum(s["details"]["nodes"] for s in samples) / n}


def log_pyramids(loggers: list, samples: list[dict[str, Any]], root: Path, summary: dict[str, Any],
                 limit: int) -> None:
    """log_media (class tubes, figures, the table) plus the graph pages (W&B Html) and the summary."""
    log_media(loggers, samples, root, limit)
    for logger in loggers:
        logger.log_metrics({f"pyramid/{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
        if type(logger).__name__ == "WandbLogger":
            import wandb

            pages = [s["pyramid"]["html"] for s in samples if "html" in s["pyramid"]][:limit]
            if pages:
                logger.experiment.log({"pyramid/graph": [wandb.Html((root / p).read_text(), inject=False) for p in pages]})


def run_pyramid(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Run task=pyramid with config `cfg`, writing into `out_dir`. Returns the results dict."""
    digest = config_hash(cfg)
    done = completed(out_dir, digest)
    task = cfg.task
    if done is not None and not task.get("overwrite", False):
        print(f"vizlab: {out_dir} already holds complete results for this config; skipping (task.overwrite=true re-runs).")
        return done
    if cfg.method.name != "pyramid":
        raise ConfigError(f"task=pyramid takes its options from method=pyramid, not method={cfg.method.name}; "
                          "drop method=... (or use task=explain method=pyramid to score the class tubes).")
    pl.seed_everything(cfg.get("seed", 0), verbose=False)
    device = resolve_device(cfg.hardware)
    model = load_model(cfg.model.name, checkpoint=cfg.model.get("checkpoint"), num_classes=cfg.model.get("num_classes"),
                       pretrained=cfg.model.get("pretrained"), device=device)
    options = method_options(cfg.method)
    pyramid = build("pyramid", model, **options).pyramid
    check_target(task.get("target"), model)
    batch_size = positive_int(task, "batch_size")
    max_tubes = task.get("max_tubes")
    if max_tubes is not None and (isinstance(max_tubes, bool) or not isinstance(max_tubes, int) or max_tubes < 1):
        raise ConfigError(f"task.max_tubes must be null (every node) or an integer >= 1, got {max_tubes!r}.")
    dataset = build_dataset(cfg.dataset, model.info.input_size, model.info.is_video, model.info.frames)
    if task.get("max_samples") is not None:
        dataset = Subset(dataset, range(min(task.max_samples, len(dataset))))

    stage = out_dir / STAGING
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    run_name = f"pyramid-{cfg.model.name}-{cfg.dataset.name}"
    loggers = build_loggers(cfg.logger, out_dir, run_name, OmegaConf.to_container(cfg, resolve=True))
    loader = SkipEmptyBatches(DataLoader(IndexedDataset(dataset), batch_size=batch_size, collate_fn=collate_loaded,
                                         num_workers=task.get("num_workers", 0)))
    samples: list[dict[str, Any]] = []
    start = time.perf_counter()
    try:
        for batch in progress_bar(loader, desc="pyramid", unit="batch", disable=not task.get("progress", True)):
            images = batch["image"].to(device)
            target = batch_targets(task.get("target"), batch["label"], model.info.num_classes)
            result = pyramid(model.normalize(images), target)
            for i in range(images.shape[0]):
                stem = SampleWriter.stem(int(batch["index"][i]), batch["name"][i])
                files = write_pyramid(stage, stem, result, i, images[i], max_tubes, task.get("save_tubes", True),
                                      task.get("save_html", True))
                samples.append(sample_record(batch, i, result, model, files, result.seconds))
        wall = time.perf_counter() - start
        skipped = skipped_samples(dataset, samples)
        if skipped and len(skipped) == len(dataset):
            raise InputError(f"All {len(dataset)} samples failed to load and were skipped; fix or remove them "
                             "(the warnings above name each file and the reason).")
        summary = summarise(samples, wall)
        log_pyramids(loggers, samples, stage, summary, task.get("log_images", 16))
    finally:
        finish_loggers(loggers)
    results = {
        "task": "pyramid", "complete": True, "config_hash": digest,
        "model": {"name": model.info.name, "checkpoint": cfg.model.get("checkpoint"),
                  "num_classes": model.info.num_classes, "input_size": model.info.input_size},
        "pyramid": pyramid.settings, "method": {"name": "pyramid", **options},
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True), "device": str(device),
        "summary": summary, "samples": samples,
    }
    if skipped:
        results["skipped"] = skipped
        results["summary"]["num_skipped"] = len(skipped)
    if (stage / "pyramid").exists():
        shutil.rmtree(out_dir / "pyramid", ignore_errors=True)
        (stage / "pyramid").rename(out_dir / "pyramid")
    shutil.rmtree(stage, ignore_errors=True)
    write_json_atomic(out_dir / "results.json", results)
    return results

