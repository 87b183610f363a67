"""task=featvis: class-agnostic feature visualisation of one layer over an image (or clip) set.

    python run.py task=featvis                                    # the embedded samples, EfficientNet-Lite0
    python run.py task=featvis dataset=image_folder dataset.root=/data/n02169497 task.clusters=10
    python run.py task=featvis model=motion_cnn dataset=synthetic_motion task.target_channels=8

Job directory: generated/cluster_KK/iteration_IIII.png (one per cluster per saved iteration; clips:
a frame strip, plus final.gif), iteration_strip.png, embedding.png, curves.png, results.json; the
W&B run gets the same pictures, the curves, the summary and a per-cluster table. Outputs are staged
in <job>/.staging and moved into place at the end (results.json last, atomically).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from vizlab.data import build_dataset
from vizlab.errors import ConfigError, InputError
from vizlab.featvis import FeatureVisResult, FourierOptions, visualise_features
from vizlab.featvis.figures import clip_frames, curves_figure, embedding_figure, iteration_strip
from vizlab.featvis.original import BUGS
from vizlab.io import write_json_atomic
from vizlab.loggers import build_loggers, finish_loggers, log_images, log_wandb_curves
from vizlab.models import load_model
from vizlab.tasks.common import positive_int, resolve_device
from vizlab.viz.overlay import frame_strip, save_gif, save_png, to_uint8_image

STAGING = ".staging"
OPTION_KEYS = ("param", "save_every", "blur_every", "denoise_every", "brightness", "tv_max_iter", "tv_eps",
               "momentum", "nesterov", "robust_lr", "sigma_reference", "progress")


def load_image_set(dataset: torch.utils.data.Dataset, max_images: int | None, num_workers: int = 0
                   ) -> tuple[torch.Tensor, list[str], list[dict[str, Any]]]:
    """Every item of an image or clip dataset → (N, 3, *S) uint8, names, skipped items."""
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    subset = torch.utils.data.Subset(dataset, range(count))
    loader = torch.utils.data.DataLoader(subset, batch_size=None, num_workers=num_workers)
    images, names, skipped = [], [], []
    for index, item in enumerate(loader):
        if "skipped" in item:
            skipped.append({"index": index, "name": str(item["name"]), "reason": str(item["skipped"])})
            continue
        images.append((item["image"].clamp(0, 1) * 255).round().to(torch.uint8))
        names.append(str(item["name"]))
    if not images:
        raise InputError("The image set is empty (every item was skipped or the dataset has none); featvis needs "
                         "at least as many images as task.clusters.")
    return torch.stack(images), names, skipped


def task_options(task: DictConfig) -> dict[str, Any]:
    """GenerateOptions keyword arguments from the task config."""
    opts = {k: task.get(k) for k in OPTION_KEYS if k in task}
    if task.get("fft") is not None:
        fft = OmegaConf.to_container(task.fft, resolve=True)
        known = set(FourierOptions.__dataclass_fields__)
        unknown = sorted(set(fft) - known)
        if unknown:
            raise ConfigError(f"task.fft has unknown key(s) {unknown}; valid: {', '.join(sorted(known))}.")
        opts["fft"] = FourierOptions(**fft)
    return opts


def strict_setting(value: Any) -> bool | list[str]:
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, str):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise ConfigError(f"task.strict_original must be true, false or a list of {', '.join(BUGS)}; "
                          f"got {value!r}.") from None


def write_outputs(result: FeatureVisResult, real: torch.Tensor, stage: Path, columns: int,
                  max_thumbnails: int) -> dict[str, Any]:
    """Images and figures into `stage`; returns {"clusters": [[files per cluster]], "figures": {...}}."""
    gen, facets = result.generation, result.facets
    video = gen.images.dim() == 5
    per_cluster: list[list[str]] = [[] for _ in range(facets.clusters)]
    for iteration, images in sorted(gen.snapshots.items()):
        for k in range(facets.clusters):
            rel = f"generated/cluster_{k:02d}/iteration_{iteration:04d}.png"
            picture = frame_strip(clip_frames(images[k])) if video else to_uint8_image(images[k])
            save_png(stage / rel, picture)
            per_cluster[k].append(rel)
    if video:
        for k in range(facets.clusters):
            rel = f"generated/cluster_{k:02d}/final.gif"
            save_gif(stage / rel, clip_frames(gen.images[k]))
            per_cluster[k].append(rel)
    figures = {"iteration_strip": iteration_strip(facets, gen, real, columns),
               "embedding": embedding_figure(facets, real, max_thumbnails,
                                             title=f"{result.layer}: {len(facets.names)} images, "
                                                   f"{facets.clusters} clusters"),
               "curves": curves_figure(gen.history, title=f"featvis on {result.layer}")}
    for name, picture in figures.items():
        save_png(stage / f"{name}.png", picture)
    return {"clusters": per_cluster, "figures": {name: f"{name}.png" for name in figures}}


def log_run(loggers: list, result: FeatureVisResult, files: dict[str, Any], root: Path,
            summary: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """W&B / TensorBoard: final images, the three figures, curves, summary numbers, cluster table."""
    import cv2
    from pytorch_lightning.loggers import WandbLogger

    def read(rel: str):
        return cv2.cvtColor(cv2.imread(str(root / rel)), cv2.COLOR_BGR2RGB)

    finals = [read(paths[-2] if paths[-1].endswith(".gif") else paths[-1]) for paths in files["clusters"]]
    log_images(loggers, "featvis/generated", finals, [f"cluster {k}" for k in range(len(finals))])
    for name, rel in files["figures"].items():
        log_images(loggers, f"featvis/{name}", [read(rel)], [name])
    hist = result.generation.history
    curves = {"loss": hist["loss"].tolist()}
    for k in range(hist["activation"].shape[1]):
        curves[f"activation_cluster{k}"] = hist["activation"][:, k].tolist()
    for key in ("lr", "mask_sigma", "sigma", "denoise_weight", "lambda"):
        curves[f"schedule_{key}"] = result.generation.schedule[key].tolist()
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            log_wandb_curves(logger.experiment, curves)
            logger.experiment.summary.update({f"featvis/{k}": v for k, v in summary.items()
                                              if isinstance(v, (int, float))})
            columns = ["cluster", "channels", "members", "assigned", "activation_generated", "activation_members",
                       "ratio"]
            data = [[r["cluster"], str(r["channels"]), ", ".join(m["name"] for m in r["members"]),
                     ", ".join(r["assigned"]), r["activation"]["generated"], r["activation"]["members"],
                     r["activation"]["ratio"]] for r in records]
            logger.log_table(key="featvis/clusters", columns=columns, data=data)


def run_featvis(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Run task=featvis with config `cfg`, writing into `out_dir`. Returns the results dict."""
    task = cfg.task
    for key in ("iterations", "clusters", "members", "target_channels", "batch_size", "strip_columns"):
        positive_int(task, key)
    seed = int(task.get("seed") if task.get("seed") is not None else cfg.get("seed", 0))
    pl.seed_everything(seed, verbose=False)
    device = resolve_device(cfg.hardware)
    if cfg.hardware.get("devices", 1) not in (1, None):
        warnings.warn("task=featvis runs on one device (all clusters in one batch); hardware.devices is ignored.",
                      stacklevel=2)
    model = load_model(cfg.model.name, checkpoint=cfg.model.get("checkpoint"), num_classes=cfg.model.get("num_classes"),
                       pretrained=cfg.model.get("pretrained"), device=device)
    size = task.get("size") or model.info.input_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ConfigError(f"task.size must be null (the model's input size) or an integer >= 8, got {size!r}.")
    octaves = OmegaConf.to_container(task.octaves, resolve=True) if task.get("octaves") is not None else None
    if not octaves:
        raise ConfigError("task.octaves is empty; give at least one octave (see conf/task/featvis.yaml).")
    options = task_options(task)
    dataset = build_dataset(cfg.dataset, size, model.info.is_video, model.info.frames)
    images, names, skipped = load_image_set(dataset, task.get("max_images"), task.get("num_workers", 0))
    stage = out_dir / STAGING
    shutil.rmtree(stage, ignore_errors=True)
    result = visualise_features(model, images, names, layer=task.get("layer"), penalty_layer=task.get("penalty_layer"),
                                target_channels=task.target_channels, clusters=task.clusters, members=task.members,
                                iterations=task.iterations, octaves=octaves, embedding=task.get("embedding", "tsne"),
                                pca_dims=task.get("pca_dims", 50), perplexity=task.get("perplexity", 30.0), seed=seed,
                                strict_original=strict_setting(task.get("strict_original", False)),
                                batch_size=task.batch_size, **options)
    stage.mkdir(parents=True, exist_ok=True)
    real = images.float() / 255
    files = write_outputs(result, real, stage, task.strip_columns, task.get("max_thumbnails", 60))
    records = result.cluster_records()
    for record, paths in zip(records, files["clusters"], strict=True):
        record["files"] = paths
    gen = result.generation
    acts = result.activations()
    summary = {"num_samples": len(names), "clusters": result.facets.clusters, "iterations": gen.iterations,
               "seconds": gen.seconds, "iterations_per_second": gen.iterations_per_second,
               "final_loss": float(gen.history["loss"][-1]), "first_loss": float(gen.history["loss"][0]),
               "activation_generated_mean": float(acts["generated"].mean()),
               "activation_members_mean": float(acts["members"].mean()),
               "activation_ratio_mean": float(acts["ratio"].mean()),
               "activation_ratio_min": float(acts["ratio"].min())}
    run_name = f"featvis-{cfg.model.name}-{cfg.dataset.name}"
    loggers = build_loggers(cfg.logger, out_dir, run_name, OmegaConf.to_container(cfg, resolve=True))
    try:
        log_run(loggers, result, files, stage, summary, records)
    finally:
        finish_loggers(loggers)
    results = {
        "task": "featvis",
        "complete": True,
        "model": {"name": model.info.name, "checkpoint": cfg.model.get("checkpoint"), "input_size": size},
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "device": str(device),
        "layer": result.layer,
        "penalty_layer": result.penalty_layer,
        "param": options.get("param", "pixel"),
        "strict_original": sorted(result.bugs),
        "octaves": octaves,
        "seed": seed,
        "embedding": {"method": task.get("embedding", "tsne"), "perplexity": result.facets.perplexity,
                      "points": result.facets.embedding.tolist(), "labels": result.facets.labels.tolist(),
                      "names": names},
        "summary": summary,
        "clusters": records,
        "figures": files["figures"],
        "curves": {"iteration": gen.schedule["iteration"].tolist(), "loss": gen.history["loss"].tolist(),
                   "activation": gen.history["activation"].T.tolist(),
                   **{f"schedule_{k}": gen.schedule[k].tolist()
                      for k in ("lr", "mask_sigma", "sigma", "denoise_weight", "lambda")}},
        "robust_loss": {"alpha_mean": float(gen.alpha.mean()), "scale_mean": float(gen.scale.mean())},
    }
    if skipped:
        results["skipped"] = skipped
    for entry in stage.iterdir():
        target = out_dir / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        entry.rename(target)
    shutil.rmtree(stage, ignore_errors=True)
    write_json_atomic(out_dir / "results.json", results)
    print(f"vizlab: featvis {result.layer}: {result.facets.clusters} clusters, {gen.iterations} iterations "
          f"({gen.iterations_per_second:.2f} it/s); target activation generated / members = "
          + ", ".join(f"{r:.2f}" for r in acts["ratio"].tolist()))
    return results


__all__ = ["load_image_set", "run_featvis"]
