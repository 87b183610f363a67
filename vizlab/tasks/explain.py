"""task=explain: run one method over a dataset with Lightning (`trainer.test`), score it with the
configured metrics, write overlays, raw maps and results.json, log to the configured logger.

Everything that can be checked (model, checkpoint, layer, method and metric options, target,
dataset) is checked before the first batch. Outputs are staged in `<job>/.staging` and moved
into place at the end, results.json last (atomically): a directory with a complete results.json
is a finished job, and re-running the same config there skips it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from vizlab.data import build_dataset
from vizlab.errors import ConfigError, InputError
from vizlab.fast_mode import FastMode
from vizlab.io import write_json_atomic
from vizlab.lit.explain_data import ExplainDataModule
from vizlab.lit.explain_module import RECORDS, ExplainModule
from vizlab.lit.hardware import FastModeCallback, launch_rank, trainer_devices
from vizlab.lit.sample_progress import SampleProgress
from vizlab.loggers import build_loggers, finish_loggers, log_media
from vizlab.methods import build
from vizlab.methods.targets import check_multi_target, is_multi_target
from vizlab.metrics.build import build_metrics, metric_protocols
from vizlab.models import ZooModel, load_model
from vizlab.tasks.common import resolve_device
from vizlab.tasks.runner import SKIPPED_AS_COMPLETE
from vizlab.viz.outputs import SampleWriter

STAGING = ".staging"


def method_options(method_cfg: DictConfig) -> dict[str, Any]:
    """The method config minus its `name`, as plain Python values."""
    opts = OmegaConf.to_container(method_cfg, resolve=True)
    opts.pop("name", None)
    return opts


def check_target(target: Any, model: ZooModel) -> None:
    """task.target must be null, "label", a class index in range, a list of them or "topK"."""
    if target is None or target == "label":
        return
    if is_multi_target(target):
        check_multi_target(target, model.info.num_classes)
        return
    if isinstance(target, bool) or not isinstance(target, int):
        raise ConfigError(f"task.target must be null (predicted class), 'label', a class index, a list of class "
                          f"indices or topK (e.g. top3); got {target!r}.")
    k = model.info.num_classes
    if not 0 <= target < k:
        raise ConfigError(f"task.target={target} is out of range: {model.info.name} has {k} classes "
                          f"(valid 0..{k - 1}); use task.target=null for the predicted class.")


def config_hash(cfg: DictConfig) -> str:
    """Hash of everything that changes results (not hardware, logger or output paths; but a reduced
    hardware.precision)."""
    keep = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("task", "model", "dataset", "method", "metric")
            if k in cfg}
    keep["seed"] = cfg.get("seed")
    precision = FastMode.from_config(cfg.get("hardware") or {}).precision
    if precision != "32":  # reduced precision changes the numbers; devices, channels_last and compile do not
        keep["precision"] = precision
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def completed(out_dir: Path, digest: str) -> dict[str, Any] | None:
    """The results of a finished job with the same config hash, else None."""
    path = out_dir / "results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return results if results.get("complete") and results.get("config_hash") == digest else None


def trainer_for(hardware: DictConfig, loggers: list, out_dir: Path, callbacks: list | None = None) -> pl.Trainer:
    """The test Trainer; Lightning's own progress bar is off (SampleProgress counts samples instead)."""
    return pl.Trainer(**trainer_devices(hardware), logger=loggers or False,
                      inference_mode=False, enable_checkpointing=False, enable_model_summary=False,
                      use_distributed_sampler=False, default_root_dir=str(out_dir), num_sanity_val_steps=0,
                      enable_progress_bar=False, callbacks=callbacks or [])


def sample_name(dataset: torch.utils.data.Dataset, index: int) -> str:
    """The name of item `index` without loading it (through Subsets; datasets with a `names` list)."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset, index = dataset.dataset, dataset.indices[index]
    names = getattr(dataset, "names", None)
    return str(names[index]) if names is not None else str(index)


def skipped_samples(dataset: torch.utils.data.Dataset, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{"index", "name"}] of the dataset items with no record: clips skipped while loading
    (dataset.skip_bad), on any DDP rank."""
    done = {s["index"] for s in samples}
    return [{"index": i, "name": sample_name(dataset, i)} for i in range(len(dataset)) if i not in done]


def check_oracle_option(value: Any, method: Any, name: str) -> bool:
    """task.oracle_check: a bool, and only for the extremal family (which has an objective to compare)."""
    from vizlab.methods.perturbation.method import PerturbationMethod

    if not isinstance(value, bool):
        raise ConfigError(f"task.oracle_check must be true or false; got {value!r}.")
    if value and not isinstance(method, PerturbationMethod):
        raise ConfigError(f"task.oracle_check=true compares an extremal-perturbation mask with the oracle mask; "
                          f"method={name} has no such objective. Use method=extremal, ep2d, ep3d or step.")
    return value


def oracle_summary(samples: list[dict[str, Any]]) -> dict[str, float]:
    """oracle_fraction: the share of (sample, area) masks whose objective is within tolerance of the
    oracle's or better (samples without an object are left out); the mean of both objectives."""
    checked = [s["details"] for s in samples if s.get("details", {}).get("as_good_as_oracle") is not None]
    passed = [p for d in checked for p in d["as_good_as_oracle"]]
    mine = [v for d in checked for v in d["optimised_objective"]]
    oracle = [v for d in checked for v in d["oracle_objective"]]
    if not passed:
        return {}
    return {"oracle_fraction": sum(passed) / len(passed), "optimised_objective": sum(mine) / len(mine),
            "oracle_objective": sum(oracle) / len(oracle)}


def run_explain(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Run task=explain with config `cfg`, writing into `out_dir`. Returns the results dict."""
    digest = config_hash(cfg)
    done = completed(out_dir, digest)
    if done is not None and not cfg.task.get("overwrite", False):
        print(f"vizlab: {out_dir} already holds complete results for this config; skipping (task.overwrite=true re-runs).")
        return {**done, SKIPPED_AS_COMPLETE: True}
    task = cfg.task
    pl.seed_everything(cfg.get("seed", 0), verbose=False)
    device = resolve_device(cfg.hardware)
    fast = FastMode.from_config(cfg.hardware)
    fast.check_device(device)
    rank = launch_rank(cfg.hardware)  # > 0: a DDP rank started by SLURM / submitit; rank 0 writes the results
    trainer_devices(cfg.hardware)     # checks nodes × devices against the launcher before any work
    model = load_model(cfg.model.name, checkpoint=cfg.model.get("checkpoint"),
                       num_classes=cfg.model.get("num_classes"), pretrained=cfg.model.get("pretrained"),
                       device=device if cfg.hardware.get("devices", 1) == 1 else "cpu")
    options = method_options(cfg.method)
    method = build(cfg.method.name, model, **options)
    oracle_check = check_oracle_option(task.get("oracle_check", False), method, cfg.method.name)
    target = task.get("target")
    target = list(target) if OmegaConf.is_list(target) else target
    check_target(target, model)
    if task.batch_size < 1:
        raise ConfigError(f"task.batch_size must be >= 1, got {task.batch_size}.")
    dataset = build_dataset(cfg.dataset, model.info.input_size, model.info.is_video, model.info.frames)
    if task.get("max_samples") is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(task.max_samples, len(dataset))))
    has_masks = len(dataset) > 0 and "mask" in dataset[0]
    if oracle_check and not has_masks:
        raise ConfigError(f"task.oracle_check=true needs object masks, and dataset={cfg.dataset.name} has none: use "
                          "dataset=synthetic_shapes (images) or dataset=synthetic_motion (clips), or drop the option.")
    metric_cfg = OmegaConf.to_container(cfg.metric, resolve=True) if cfg.get("metric") else {}
    metrics = build_metrics(metric_cfg, model, has_masks)

    stage = out_dir / STAGING
    if rank == 0:  # the other ranks write into it only after joining rank 0 (trainer.test)
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
    writer = SampleWriter(stage, task.save_overlays, task.save_maps, task.get("overlay_power", 0.8))
    run_name = f"{cfg.method.name}-{cfg.model.name}-{cfg.dataset.name}"
    loggers = build_loggers(cfg.logger, out_dir, run_name, OmegaConf.to_container(cfg, resolve=True)) if rank == 0 else []
    module = ExplainModule(model, method, cfg.method.name, metrics, target, writer, stage, oracle_check=oracle_check)
    data = ExplainDataModule(dataset, task.batch_size, task.get("num_workers", 0))
    fast_mode = FastModeCallback(fast)
    start = time.perf_counter()
    try:
        bars = [SampleProgress(len(dataset), f"{cfg.method.name} · {model.info.name}")] if task.get("progress", True) else []
        trainer_for(cfg.hardware, loggers, out_dir, [fast_mode, *bars]).test(module, datamodule=data, verbose=False)
        if rank != 0:
            return {"task": "explain", "rank": rank, "summary": {"num_samples": len(module.records)}}
        wall = time.perf_counter() - start
        records = json.loads((stage / RECORDS).read_text())
        samples = records["samples"]
        skipped = skipped_samples(dataset, samples)
        if skipped and len(skipped) == len(dataset):
            names = ", ".join(s["name"] for s in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
            raise InputError(f"All {len(dataset)} samples failed to load and were skipped ({names}); "
                             "fix or remove them (the warnings above name each file and the reason).")
        curves = records.get("curves") or {}
        log_media(loggers, samples, stage, task.get("log_images", 32), curves)
    finally:
        finish_loggers(loggers)
    results = {
        "task": "explain",
        "complete": True,
        "config_hash": digest,
        "model": {"name": model.info.name, "checkpoint": cfg.model.get("checkpoint"),
                  "num_classes": model.info.num_classes, "input_size": model.info.input_size},
        "method": {"name": cfg.method.name, **options, "resolved": repr(method)},
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "hardware": OmegaConf.to_container(cfg.hardware, resolve=True),
        "fast_mode": fast_mode.status or {"precision": fast.precision, "channels_last": fast.channels_last,
                                          "compile": fast.compile},
        "device": str(device),
        "metrics_config": metric_protocols(metrics),
        "summary": {"num_samples": len(samples), "seconds_total": records["seconds_total"],
                    "seconds_per_sample": records["seconds_total"] / max(1, len(samples)),
                    "wall_seconds": wall, **records["metrics"], **(oracle_summary(samples) if oracle_check else {})},
        "samples": samples,
    }
    if curves:
        results["curves"] = curves
    if skipped:
        results["skipped"] = skipped
        results["summary"]["num_skipped"] = len(skipped)
    for sub in ("heatmaps", "maps"):
        if (stage / sub).exists():
            shutil.rmtree(out_dir / sub, ignore_errors=True)
            (stage / sub).rename(out_dir / sub)
    shutil.rmtree(stage, ignore_errors=True)
    write_json_atomic(out_dir / "results.json", results)
    return results
