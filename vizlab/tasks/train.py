"""task=train: train `shapes_cnn` on `synthetic_shapes` with Lightning and cache the weights.

The trained state dict goes to the cache (`$VIZLAB_CACHE` or `~/.cache/vizlab`, file
`shapes_cnn.pt`), where `load_model("shapes_cnn")` finds it, and to `<job>/shapes_cnn.pt`.
If the cache already holds a checkpoint, training is skipped (task.retrain=true retrains) and
the cached model is only evaluated. results.json: {"task": "train", "summary": {"num_samples":
num_val, "val_acc", "seconds" (wall, training or loading), "cpu_seconds", "threads", "checkpoint",
"trained"}, ...}.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from vizlab.data.synthetic_shapes import CLASS_NAMES, make_split
from vizlab.errors import ConfigError
from vizlab.io import write_json_atomic
from vizlab.lit.classifier import ClassifierModule
from vizlab.lit.datamodules import ShapesDataModule
from vizlab.loggers import build_loggers, finish_loggers
from vizlab.models.synthetic import SHAPES_CNN_INFO, ShapesCNN, checkpoint_path, save_state
from vizlab.models.zoo import load_state, read_checkpoint
from vizlab.tasks.common import resolve_device

MODEL, DATASET = "shapes_cnn", "synthetic_shapes"


def _positive(task: DictConfig, key: str) -> int:
    value = task.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"task.{key} must be an integer >= 1, got {value!r}.")
    return value


def check_config(cfg: DictConfig) -> None:
    """Fail before any work on a config task=train cannot run."""
    if cfg.model.name != MODEL:
        raise ConfigError(f"task=train trains model={MODEL} only, got model={cfg.model.name}.")
    if cfg.dataset.name != DATASET:
        raise ConfigError(f"task=train trains on dataset={DATASET} only, got dataset={cfg.dataset.name}.")
    size = cfg.dataset.get("size") or SHAPES_CNN_INFO.input_size
    if size != SHAPES_CNN_INFO.input_size:
        raise ConfigError(f"{MODEL} is trained at {SHAPES_CNN_INFO.input_size} px; got dataset.size={size}.")
    if cfg.model.get("num_classes") not in (None, len(CLASS_NAMES)):
        raise ConfigError(f"{MODEL} has {len(CLASS_NAMES)} classes ({', '.join(CLASS_NAMES)}); "
                          f"got model.num_classes={cfg.model.num_classes}.")
    task = cfg.task
    for key in ("epochs", "batch_size", "num_train", "num_val"):
        _positive(task, key)
    if task.num_train < task.batch_size:
        raise ConfigError(f"task.num_train ({task.num_train}) must be >= task.batch_size ({task.batch_size}).")
    if not task.lr > 0:
        raise ConfigError(f"task.lr must be > 0, got {task.lr}.")


@torch.no_grad()
def evaluate(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Accuracy of `net` on uint8 images (N, 3, S, S), normalised with shapes_cnn's mean and std."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    mean = torch.tensor(SHAPES_CNN_INFO.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(SHAPES_CNN_INFO.std, device=device).view(1, -1, 1, 1)
    correct = 0
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device).float() / 255
        logits = net((x - mean) / std)
        correct += int((logits.argmax(1).cpu() == labels[i:i + batch_size]).sum())
    net.train(was_training)
    return correct / len(images)


def fit(cfg: DictConfig, out_dir: Path) -> nn.Module:
    """Train a fresh ShapesCNN with a Lightning Trainer; return the network with the best val/acc."""
    task, hw = cfg.task, cfg.hardware
    net = ShapesCNN(len(CLASS_NAMES))
    module = ClassifierModule(net, len(CLASS_NAMES), lr=float(task.lr),
                              weight_decay=float(task.get("weight_decay", 1e-4)),
                              optimizer=task.get("optimizer", "adamw"), schedule=task.get("schedule", "onecycle"),
                              mean=SHAPES_CNN_INFO.mean, std=SHAPES_CNN_INFO.std, flips=True)
    data = ShapesDataModule(task.num_train, task.num_val, SHAPES_CNN_INFO.input_size, task.seed, task.seed + 1,
                            task.batch_size, CLASS_NAMES, task.get("num_workers", 0))
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=str(out_dir / "checkpoints"), filename="epoch{epoch:02d}",
                                              monitor="val/acc", mode="max", save_top_k=1,
                                              auto_insert_metric_name=False)
    loggers = build_loggers(cfg.logger, out_dir, f"train-{MODEL}", OmegaConf.to_container(cfg, resolve=True))
    accelerator = "gpu" if hw.get("accelerator") in ("gpu", "cuda") else hw.get("accelerator", "cpu")
    trainer = pl.Trainer(accelerator=accelerator, devices=hw.get("devices", 1), strategy=hw.get("strategy", "auto"),
                         max_epochs=task.epochs, logger=loggers or False, callbacks=[checkpoint],
                         enable_progress_bar=True, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=str(out_dir), deterministic=False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            trainer.fit(module, datamodule=data)
    finally:
        finish_loggers(loggers)
    net = net.cpu().eval()
    best = checkpoint.best_model_path
    if best and Path(best).is_file():
        load_state(net, read_checkpoint(best), best)  # folds the neck (eval mode)
    return net.fold_neck()


def run_train(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Run task=train with config `cfg`, writing into `out_dir`. Returns the results dict."""
    check_config(cfg)
    task = cfg.task
    resolve_device(cfg.hardware)  # validates hardware.accelerator, applies hardware.threads
    pl.seed_everything(task.seed, verbose=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = checkpoint_path()
    start, cpu_start = time.perf_counter(), time.process_time()
    trained = bool(task.get("retrain", False)) or not cache.is_file()
    if trained:
        net = fit(cfg, out_dir)
        save_state(net, cache)
        save_state(net, out_dir / f"{MODEL}.pt")
    else:
        print(f"vizlab: using the cached {MODEL} at {cache} (task.retrain=true trains again).")
        net = ShapesCNN(len(CLASS_NAMES)).eval()
        load_state(net, read_checkpoint(cache), str(cache))
        shutil.copyfile(cache, out_dir / f"{MODEL}.pt")
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    images, labels, _ = make_split(task.num_val, SHAPES_CNN_INFO.input_size, task.seed + 1, CLASS_NAMES)
    val_acc = evaluate(net, images, labels)
    results = {
        "task": "train",
        "model": {"name": MODEL, "num_classes": len(CLASS_NAMES), "class_names": list(CLASS_NAMES),
                  "input_size": SHAPES_CNN_INFO.input_size},
        "config": OmegaConf.to_container(task, resolve=True),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "summary": {"num_samples": int(task.num_val), "val_acc": val_acc, "seconds": seconds,
                    "cpu_seconds": cpu_seconds, "threads": torch.get_num_threads(), "checkpoint": str(cache),
                    "trained": trained},
    }
    write_json_atomic(out_dir / "results.json", results)
    print(f"vizlab: {MODEL} val accuracy {val_acc:.4f} on {task.num_val} images "
          f"({'trained' if trained else 'cached'}, {seconds:.1f} s) → {cache}")
    return results
