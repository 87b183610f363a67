"""task=train / task=train_motion: train a synthetic-data model with Lightning and cache the weights.

| command                                    | model      | dataset          | data                        | 2 CPU cores |
|--------------------------------------------|------------|------------------|-----------------------------|-------------|
| task=train                                 | shapes_cnn | synthetic_shapes | 64² images, class = shape   | ~1 minute   |
| task=train_motion                          | motion_cnn | synthetic_motion | 8×48² clips, class = motion | ~2 minutes  |
| task=train dataset=synthetic_motion        | the same as task=train_motion                                                |
| task=train model=motion_cnn                | the same as task=train_motion                                                |
| task=train model=motion_cnn16              | motion_cnn16 | synthetic_motion | 16×48² clips, class = motion | ~3 minutes |

task=train follows model= or dataset= (`route`): a model or data set other than its defaults
(shapes_cnn, synthetic_shapes) picks the recipe, and the other one follows. task=train_motion is
task=train with task.model=motion_cnn fixed. Settings left null (epochs, batch_size, lr, num_train,
num_val) take the chosen model's `task.recipes` entry, so every route trains with the same recipe.

The trained state dict goes to the cache (`$VIZLAB_CACHE` or `~/.cache/vizlab`, file
`<model>.pt`), where `load_model(<model>)` finds it, and to `<job>/<model>.pt`. If the cache
already holds a checkpoint, training is skipped (task.retrain=true retrains) and the cached model
is only evaluated. results.json: {"task": "train", "summary": {"num_samples": num_val, "val_acc",
"seconds" (wall, training or loading), "cpu_seconds", "threads", "checkpoint", "trained"}, ...}.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from vizlab.data.synthetic_motion import CLASS_NAMES as MOTION_CLASSES
from vizlab.data.synthetic_motion import make_motion_split
from vizlab.data.synthetic_shapes import CLASS_NAMES as SHAPE_CLASSES
from vizlab.data.synthetic_shapes import make_split
from vizlab.errors import ConfigError, unknown_choice
from vizlab.io import write_json_atomic
from vizlab.lit.classifier import ClassifierModule
from vizlab.lit.datamodules import TensorSplitDataModule
from vizlab.loggers import build_loggers, finish_loggers
from vizlab.models.synthetic import (
    MOTION_CNN16_INFO,
    MOTION_CNN_INFO,
    SHAPES_CNN_INFO,
    GapCNN,
    MotionCNN,
    ShapesCNN,
    checkpoint_path,
    save_state,
)
from vizlab.models.wrapper import ModelInfo
from vizlab.models.zoo import load_state, read_checkpoint
from vizlab.tasks.common import positive_int, resolve_device, trainer_hardware

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
DEFAULT_MODEL = "shapes_cnn"  # task=train's model when neither model= nor dataset= names another
RECIPE_KEYS = ("epochs", "batch_size", "lr", "num_train", "num_val")  # null in task: from task.recipes


@dataclass(frozen=True)
class Recipe:
    """How to train one synthetic model: its network, data and augmentation."""

    task: str                                   # the task config that selects this recipe
    dataset: str
    info: ModelInfo
    build: Callable[[], GapCNN]                 # a fresh network
    split: Callable[[int, int], Split]          # (num_samples, seed) -> (inputs uint8, labels, masks)
    flips: bool                                 # flips never change the class (shapes yes, motion no)


def motion_recipe(task: str, info: ModelInfo) -> Recipe:
    """A MotionCNN on synthetic_motion clips of `info`'s size and length (no flips: they change the class)."""
    return Recipe(task, "synthetic_motion", info, lambda: MotionCNN(len(MOTION_CLASSES)),
                  lambda n, seed: make_motion_split(n, info.input_size, info.frames, seed, MOTION_CLASSES), False)


RECIPES: dict[str, Recipe] = {
    "shapes_cnn": Recipe("train", "synthetic_shapes", SHAPES_CNN_INFO, lambda: ShapesCNN(len(SHAPE_CLASSES)),
                         lambda n, seed: make_split(n, SHAPES_CNN_INFO.input_size, seed, SHAPE_CLASSES), True),
    "motion_cnn": motion_recipe("train_motion", MOTION_CNN_INFO),
    "motion_cnn16": motion_recipe("train", MOTION_CNN16_INFO),
}


def dataset_model(dataset: str) -> str | None:
    """The model a data set trains by default: its first recipe's (synthetic_motion: motion_cnn)."""
    return next((m for m, r in RECIPES.items() if r.dataset == dataset), None)


def command_line_groups() -> set[str]:
    """Config groups chosen on the command line of the running Hydra job (empty outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = HydraConfig.get().overrides.task
    except ValueError:  # not inside a Hydra job (e.g. the compose API)
        return set()
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}


def choose_model(cfg: DictConfig) -> str:
    """The synthetic model this training run trains.

    task.model if set (task=train_motion: motion_cnn). Otherwise task=train follows the command
    line: a model or a data set other than its defaults (shapes_cnn, synthetic_shapes) decides,
    e.g. dataset=synthetic_motion or model=motion_cnn → motion_cnn; a model other than shapes_cnn,
    or model= and dataset= both given, decides (a mismatch is then an error in `check_config`).
    """
    model, dataset, fixed = cfg.model.name, cfg.dataset.name, cfg.task.get("model")
    if fixed is not None:
        if fixed not in RECIPES:
            raise unknown_choice("task.model", str(fixed), RECIPES)
        if model != fixed:
            raise ConfigError(f"task.model={fixed} (task={RECIPES[fixed].task}) trains {fixed}; got model={model}. "
                              f"For {model} use task=train model={model}.")
        return fixed
    if model not in RECIPES:
        pairs = ", ".join(f"task={r.task} model={m} dataset={r.dataset}" for m, r in RECIPES.items())
        raise ConfigError(f"task={cfg.task.name} trains vizlab's synthetic models only ({pairs}); "
                          f"got model={model}.")
    chosen = dataset_model(dataset)
    if model != DEFAULT_MODEL or chosen is None or {"model", "dataset"} <= command_line_groups():
        return model
    return chosen


def route(cfg: DictConfig) -> DictConfig:
    """A copy of `cfg` for the model `choose_model` picks: model.name set to it; the dataset
    replaced by the recipe's (conf/dataset/<name>.yaml) when it is task=train's default and was not
    chosen on the command line; task.model set; the null recipe settings filled in from
    task.recipes.<model>."""
    name = choose_model(cfg)
    recipe = RECIPES[name]
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    out.model.name = name
    follows = cfg.task.get("model") is None and "dataset" not in command_line_groups()
    if follows and out.dataset.name == RECIPES[DEFAULT_MODEL].dataset != recipe.dataset:
        out.dataset = recipe_dataset(recipe.dataset)
    out.task.model = name
    table = (out.task.get("recipes") or {}).get(name) or {}
    for key in RECIPE_KEYS:
        if out.task.get(key) is None and key in table:
            out.task[key] = table[key]
    return out


def recipe_dataset(name: str) -> DictConfig:
    """The dataset config `name` as task=train_motion composes it (conf/dataset/<name>.yaml)."""
    from vizlab.entry import conf_dir

    path = (conf_dir() or Path("conf")) / "dataset" / f"{name}.yaml"
    return OmegaConf.load(path) if path.is_file() else OmegaConf.create({"name": name})


def mismatch_message(model: str, dataset: str) -> str:
    """The error for model= and dataset= that do not train together, with the commands that do."""
    recipe = RECIPES[model]
    other = dataset_model(dataset)
    fix = (f"Give one of them: task=train model={model}, or task=train dataset={dataset} (trains {other})"
           if other else f"Drop dataset= or set dataset={recipe.dataset}")
    return f"model={model} trains on dataset={recipe.dataset}; got dataset={dataset}. {fix}."


def check_config(cfg: DictConfig) -> Recipe:
    """Fail before any work on a config the training task cannot run; return the model's recipe."""
    name = choose_model(cfg)
    recipe = RECIPES[name]
    info = recipe.info
    if cfg.dataset.name != recipe.dataset:
        raise ConfigError(mismatch_message(name, cfg.dataset.name))
    size = cfg.dataset.get("size") or info.input_size
    if size != info.input_size:
        raise ConfigError(f"{name} is trained at {info.input_size} px; got dataset.size={size}.")
    if info.frames is not None and (cfg.dataset.get("frames") or info.frames) != info.frames:
        raise ConfigError(f"{name} is trained on {info.frames}-frame clips; got dataset.frames={cfg.dataset.frames}.")
    if cfg.model.get("num_classes") not in (None, info.num_classes):
        raise ConfigError(f"{name} has {info.num_classes} classes ({', '.join(info.class_names)}); "
                          f"got model.num_classes={cfg.model.num_classes}.")
    task = cfg.task
    for key in ("epochs", "batch_size", "num_train", "num_val"):
        positive_int(task, key)
    if task.num_train < task.batch_size:
        raise ConfigError(f"task.num_train ({task.num_train}) must be >= task.batch_size ({task.batch_size}).")
    if not task.lr > 0:
        raise ConfigError(f"task.lr must be > 0, got {task.lr}.")
    return recipe


@torch.no_grad()
def evaluate(net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, info: ModelInfo,
             batch_size: int = 250) -> float:
    """Accuracy of `net` on uint8 inputs (N, 3, [T,] S, S), normalised with `info`'s mean and std."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    shape = (1, -1) + (1,) * (inputs.dim() - 2)
    mean = torch.tensor(info.mean, device=device).view(shape)
    std = torch.tensor(info.std, device=device).view(shape)
    correct = 0
    for i in range(0, len(inputs), batch_size):
        x = inputs[i:i + batch_size].to(device).float() / 255
        logits = net((x - mean) / std)
        correct += int((logits.argmax(1).cpu() == labels[i:i + batch_size]).sum())
    net.train(was_training)
    return correct / len(inputs)


def fit(cfg: DictConfig, recipe: Recipe, out_dir: Path) -> GapCNN:
    """Train a fresh network with a Lightning Trainer; return the one with the best val/acc."""
    task, hw, info = cfg.task, cfg.hardware, recipe.info
    net = recipe.build()
    module = ClassifierModule(net, info.num_classes, lr=float(task.lr),
                              weight_decay=float(task.get("weight_decay", 1e-4)),
                              optimizer=task.get("optimizer", "adamw"), schedule=task.get("schedule", "onecycle"),
                              mean=info.mean, std=info.std, flips=recipe.flips)
    train, train_labels, _ = recipe.split(task.num_train, task.seed)
    val, val_labels, _ = recipe.split(task.num_val, task.seed + 1)
    data = TensorSplitDataModule({"image": train, "label": train_labels}, {"image": val, "label": val_labels},
                                 task.batch_size, task.get("num_workers", 0))
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=str(out_dir / "checkpoints"), filename="epoch{epoch:02d}",
                                              monitor="val/acc", mode="max", save_top_k=1,
                                              auto_insert_metric_name=False)
    loggers = build_loggers(cfg.logger, out_dir, f"train-{info.name}", OmegaConf.to_container(cfg, resolve=True))
    trainer = pl.Trainer(**trainer_hardware(hw), max_epochs=task.epochs, logger=loggers or False, callbacks=[checkpoint],
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
    """Run task=train / train_motion with config `cfg`, writing into `out_dir`. Returns the results dict."""
    cfg = route(cfg)
    recipe = check_config(cfg)
    task, info = cfg.task, recipe.info
    name = info.name
    resolve_device(cfg.hardware)  # validates hardware.accelerator, applies hardware.threads
    pl.seed_everything(task.seed, verbose=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = checkpoint_path(name)
    start, cpu_start = time.perf_counter(), time.process_time()
    trained = bool(task.get("retrain", False)) or not cache.is_file()
    if trained:
        print(f"vizlab: training {name} on {recipe.dataset} ({task.epochs} epochs, {task.num_train} "
              f"{'clips' if info.frames else 'images'}, batch {task.batch_size}, lr {task.lr})")
        net = fit(cfg, recipe, out_dir)
        save_state(net, cache)
        save_state(net, out_dir / f"{name}.pt")
    else:
        print(f"vizlab: using the cached {name} at {cache} (task.retrain=true trains again).")
        net = recipe.build().eval()
        load_state(net, read_checkpoint(cache), str(cache))
        shutil.copyfile(cache, out_dir / f"{name}.pt")
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    inputs, labels, _ = recipe.split(task.num_val, task.seed + 1)
    val_acc = evaluate(net, inputs, labels, info)
    results = {
        "task": "train",
        "model": {"name": name, "num_classes": info.num_classes, "class_names": list(info.class_names),
                  "input_size": info.input_size, "frames": info.frames},
        "config": {k: v for k, v in OmegaConf.to_container(task, resolve=True).items() if k != "recipes"},
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "summary": {"num_samples": int(task.num_val), "val_acc": val_acc, "seconds": seconds,
                    "cpu_seconds": cpu_seconds, "threads": torch.get_num_threads(), "checkpoint": str(cache),
                    "trained": trained},
    }
    write_json_atomic(out_dir / "results.json", results)
    print(f"vizlab: {name} val accuracy {val_acc:.4f} on {task.num_val} "
          f"{'clips' if info.frames else 'images'} ({'trained' if trained else 'cached'}, {seconds:.1f} s) → {cache}")
    return results
