"""task=train_half and task=train_full: the two HR-CAM training stages (spec §6.3) with Lightning.

    python run.py task=train_half experiment=hrcam_shapes      # stage 1: the classifier (HalfModel)
    python run.py task=train_full experiment=hrcam_shapes      # stage 2: the expansion path (FullModel)
    python run.py task=train_half dataset=image_folder dataset.root=/data/animals   # root/train, root/test

Stage 1 trains a HalfModel with cross-entropy. Stage 2 loads the half checkpoint (the cache, or
task.half_checkpoint=PATH), copies its weights into a FullModel by name and verifies the copy,
freezes the classifier (trunk to the branch point, conv_aux, fc; BatchNorm statistics too) and
trains the expansion path with MSE(reconstruction, input) + CE. After training it checks again
that the classifier is bit-for-bit the half model's.

Both stages: Adadelta (lr 1.0, rho 0.95) by default, ReduceLROnPlateau on train/loss (factor
√0.1), ModelCheckpoint (stage 1: best val/acc; stage 2: best val/loss; plus last.ckpt),
optional early stopping, resume with task.resume=<.ckpt>, precision and devices from the
hardware config, metrics and sample CAM pictures logged every epoch to the configured logger.
The best weights go to `<cache>/hrcam_half.pt` / `hrcam_full.pt` (where model=hrcam_half /
hrcam_full find them) and to the job directory. results.json summary: num_samples (validation
images), val_acc, val_loss, epochs, steps, train_images_per_second, seconds, checkpoint, ...
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from vizlab.data.synthetic_shapes import CLASS_NAMES, make_split
from vizlab.errors import CheckpointError, ConfigError
from vizlab.io import write_json_atomic
from vizlab.lit.datamodules import FolderDataModule, TensorSplitDataModule
from vizlab.lit.hrcam import (
    OPTIMIZERS,
    SCHEDULES,
    CAMSamples,
    EpochHistory,
    HRCAMModule,
    check_augment,
    log_cam_files,
)
from vizlab.loggers import build_loggers, finish_loggers
from vizlab.models.hrcam import (
    FullModel,
    HalfModel,
    HRCAMConfig,
    build_from_state,
    cache_path,
    check_weights,
    transfer_half_weights,
)
from vizlab.models.synthetic import save_state
from vizlab.models.zoo import read_checkpoint
from vizlab.tasks.common import positive_int, resolve_device, trainer_hardware

DATASETS = ("synthetic_shapes", "image_folder")
ARCH_KEYS = ("input_size", "growth", "layers_per_block", "blocks", "init_filters", "aux_channels", "raw_pixels")
MONITOR = {"half": ("val/acc", "max"), "full": ("val/loss", "min")}


# --- checks -----------------------------------------------------------------------------------
def check_task(cfg: DictConfig) -> None:
    """Everything about task.* and the dataset that can be checked before any work."""
    task = cfg.task
    if cfg.dataset.name not in DATASETS:
        raise ConfigError(f"task={task.name} trains on a labelled dataset: dataset=synthetic_shapes or "
                          f"dataset=image_folder (root/train, root/test); got dataset={cfg.dataset.name}. "
                          "For the CPU recipe add experiment=hrcam_shapes.")
    for key in ("epochs", "batch_size"):
        positive_int(task, key)
    if cfg.dataset.name == "synthetic_shapes":
        for key in ("num_train", "num_val"):
            positive_int(task, key)
        if task.num_train < task.batch_size:
            raise ConfigError(f"task.num_train ({task.num_train}) must be >= task.batch_size ({task.batch_size}).")
    elif not cfg.dataset.get("root"):
        raise ConfigError("dataset=image_folder needs dataset.root=/path/with/train/and/test/class/folders.")
    if task.get("optimizer", "adadelta") not in OPTIMIZERS:
        raise ConfigError(f"task.optimizer must be one of {OPTIMIZERS}, got {task.optimizer!r}.")
    if task.get("schedule", "plateau") not in SCHEDULES:
        raise ConfigError(f"task.schedule must be one of {SCHEDULES}, got {task.schedule!r}.")
    if not float(task.get("lr", 1.0)) > 0:
        raise ConfigError(f"task.lr must be > 0, got {task.lr}.")
    if float(task.get("weight_decay", 0.0)) < 0:
        raise ConfigError(f"task.weight_decay must be >= 0, got {task.weight_decay}.")
    if not 0 < float(task.get("plateau_factor", 0.5)) < 1:
        raise ConfigError(f"task.plateau_factor must be in (0, 1), got {task.plateau_factor}.")
    patience = task.get("early_stopping_patience")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ConfigError(f"task.early_stopping_patience must be null (off) or an integer >= 1, got {patience!r}.")
    check_augment(_container(task.get("augment")))
    resume = task.get("resume")
    if resume and not Path(resume).expanduser().is_file():
        raise CheckpointError(f"task.resume={resume} does not exist; give a Lightning .ckpt of this task "
                              "(<job>/checkpoints/last.ckpt).")


def _container(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def model_config(cfg: DictConfig, class_names: list[str]) -> HRCAMConfig:
    """HRCAMConfig from model.* and the dataset's classes (ConfigError for bad values)."""
    m = cfg.model
    if m.get("num_classes") not in (None, len(class_names)):
        raise ConfigError(f"model.num_classes={m.num_classes} but the dataset has {len(class_names)} classes; "
                          "set model.num_classes=null (the dataset's).")
    defaults = HRCAMConfig()
    arch = {k: m.get(k, getattr(defaults, k)) for k in ARCH_KEYS}
    config = HRCAMConfig(num_classes=len(class_names), class_names=tuple(class_names), **arch)
    check_stage2_compatible(config)
    return config


def check_stage2_compatible(config: HRCAMConfig) -> None:
    """Stage 1 refuses a HalfModel that stage 2 could not extend: the FullModel's high-res CAM is
    A_high (`growth` channels) · W, with W the classifier's weights over conv_aux's `aux_channels`."""
    if config.aux_channels != config.growth:
        raise ConfigError(f"model.aux_channels={config.aux_channels} must equal model.growth={config.growth}: "
                          "task=train_full's high-res CAM multiplies A_high (growth channels) by the classifier "
                          f"weights over conv_aux's aux_channels; set model.aux_channels={config.growth} "
                          f"(or model.growth={config.aux_channels}).")


# --- data ---------------------------------------------------------------------------------------
def dataset_classes(cfg: DictConfig) -> tuple[list[str], FolderDataModule | None]:
    """Class names of the training data (and the folder data module, already scanned)."""
    if cfg.dataset.name == "synthetic_shapes":
        from vizlab.data.synthetic_shapes import _check

        classes = list(_check(1, 64, list(cfg.dataset.get("classes") or CLASS_NAMES)))
        return classes, None
    data = FolderDataModule(cfg.dataset.root, 64, cfg.task.batch_size, cfg.dataset.get("resize", "squash"),
                            cfg.task.get("num_workers", 0))
    labels = data.train_set.labels + data.val_set.labels
    if max(labels) >= len(data.class_names):
        raise ConfigError(f"the class folders under {cfg.dataset.root} are numbers used as labels (max {max(labels)}) "
                          f"but there are only {len(data.class_names)} classes; name the folders by class "
                          "(e.g. WordNet IDs) or number them 0..K-1.")
    return data.class_names, data


def build_data(cfg: DictConfig, size: int, class_names: list[str], folder: FolderDataModule | None
               ) -> tuple[pl.LightningDataModule, torch.Tensor, torch.Tensor]:
    """(data module at side `size`, a few validation images in [0, 1] for the CAM pictures, their labels)."""
    task = cfg.task
    k = int(task.get("cam_samples", 4))
    if folder is None:
        train = make_split(task.num_train, size, task.seed, class_names)
        val = make_split(task.num_val, size, task.seed + 1, class_names)
        data = TensorSplitDataModule({"image": train[0], "label": train[1]}, {"image": val[0], "label": val[1]},
                                     task.batch_size, task.get("num_workers", 0))
        return data, val[0][:k].float() / 255, val[1][:k]
    data = folder
    data.train_set.size = data.val_set.size = size  # scanned once by dataset_classes; images load at `size`
    # one image per class first, so the pictures show several classes
    order, seen = [], set()
    for i, label in enumerate(data.val_set.labels):
        if label not in seen:
            seen.add(label)
            order.append(i)
        if len(order) == k:
            break
    items = [data.val_set[i] for i in order]
    if not items:
        return data, torch.zeros(0, 3, size, size), torch.zeros(0, dtype=torch.long)
    return data, torch.stack([it["image"] for it in items]), torch.tensor([it["label"] for it in items])


@torch.no_grad()
def evaluate(net: HalfModel, loader, device: torch.device) -> dict[str, float]:
    """Accuracy (and mean reconstruction MSE for a FullModel) of `net` over a validation loader."""
    net.eval().to(device)
    mean = torch.tensor(net.config.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(net.config.std, device=device).view(1, -1, 1, 1)
    correct = total = 0
    recon = 0.0
    for batch in loader:
        images = batch["image"].to(device)
        x = ((images.float() / 255 if images.dtype == torch.uint8 else images.float()) - mean) / std
        out = net.features(x)
        correct += int((out["logits"].argmax(1).cpu() == batch["label"]).sum())
        total += len(x)
        if "reconstruction" in out:
            recon += float(F.mse_loss(out["reconstruction"], x, reduction="sum")) / x[0].numel()
    result = {"val_acc": correct / max(1, total), "num_samples": total}
    if isinstance(net, FullModel):
        result["val_recon"] = recon / max(1, total)
    return result


# --- training -----------------------------------------------------------------------------------
def fit_stage(cfg: DictConfig, out_dir: Path, module: HRCAMModule, data: pl.LightningDataModule,
              samples: torch.Tensor, sample_labels: torch.Tensor, class_names: list[str]) -> dict[str, Any]:
    """Run trainer.fit for one stage; returns {"best": path, "epochs", "steps", "images_per_second", ...}."""
    task, stage = cfg.task, module.stage
    monitor, mode = MONITOR[stage]
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=str(out_dir / "checkpoints"), filename="best-epoch{epoch:03d}",
                                              monitor=monitor, mode=mode, save_top_k=1, save_last=True,
                                              auto_insert_metric_name=False)
    callbacks: list[pl.Callback] = [checkpoint, EpochHistory(out_dir / "history.json"),
                                    CAMSamples(samples, sample_labels, class_names, out_dir)]
    if task.get("early_stopping_patience"):
        callbacks.append(pl.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=task.early_stopping_patience))
    run_name = f"{task.name}-{cfg.dataset.name}"
    loggers = build_loggers(cfg.logger, out_dir, run_name, OmegaConf.to_container(cfg, resolve=True))
    if loggers:
        callbacks.append(pl.callbacks.LearningRateMonitor(logging_interval="epoch"))
    trainer = pl.Trainer(**trainer_hardware(cfg.hardware), max_epochs=task.epochs, logger=loggers or False,
                         callbacks=callbacks, enable_progress_bar=bool(task.get("progress_bar", True)),
                         enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(out_dir),
                         log_every_n_steps=1)
    resume = task.get("resume")
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*is smaller than the logging interval.*")
            warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")  # stage 2: the frozen classifier
            trainer.fit(module, datamodule=data, ckpt_path=str(Path(resume).expanduser()) if resume else None)
        if trainer.world_size > 1:
            log_cam_files(loggers, out_dir)
    finally:
        finish_loggers(loggers)
    seconds = time.perf_counter() - start
    # rank 0's history file: under ddp_spawn this process's trainer does not see the workers' counters
    history = json.loads((out_dir / "history.json").read_text()) if (out_dir / "history.json").is_file() else []
    last = history[-1] if history else {}
    best = checkpoint.best_model_path or checkpoint.last_model_path
    return {"best": best, "last": checkpoint.last_model_path, "epochs": int(last.get("epoch", -1)) + 1,
            "steps": int(last.get("step", 0)), "seconds": seconds,
            "train_images_per_second": last["train_images"] / last["train_seconds"] if last.get("train_seconds") else None}


def _module(cfg: DictConfig, net: HalfModel, stage: str, device: torch.device) -> HRCAMModule:
    task = cfg.task
    return HRCAMModule(net, stage, optimizer=task.get("optimizer", "adadelta"), lr=float(task.get("lr", 1.0)),
                       rho=float(task.get("rho", 0.95)), weight_decay=float(task.get("weight_decay", 2e-4)),
                       schedule=task.get("schedule", "plateau"), plateau_factor=float(task.get("plateau_factor", 0.1 ** 0.5)),
                       plateau_patience=int(task.get("plateau_patience", 10)), min_lr=float(task.get("min_lr", 1e-5)),
                       augment=_container(task.get("augment")), recon_weight=float(task.get("recon_weight", 1.0)),
                       ce_weight=float(task.get("ce_weight", 1.0)),
                       channels_last=device.type == "cpu" if task.get("channels_last") is None
                       else bool(task.channels_last))


def _best_net(kind: str, best: str, fallback: HalfModel) -> HalfModel:
    """The network in the best Lightning checkpoint (or `fallback` if there is none), eval mode, CPU."""
    if best and Path(best).is_file():
        return build_from_state(read_checkpoint(best), kind, None, best)
    return fallback.cpu().eval()


def _results(cfg: DictConfig, net: HalfModel, fit: dict[str, Any], scores: dict[str, Any], cache: Path,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "task": cfg.task.name,
        "model": {"name": f"hrcam_{net.kind}", **net.config.to_json(),
                  "parameters": sum(p.numel() for p in net.parameters())},
        "config": OmegaConf.to_container(cfg.task, resolve=True),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "hardware": OmegaConf.to_container(cfg.hardware, resolve=True),
        "summary": {**scores, "epochs": fit["epochs"], "steps": fit["steps"], "seconds": fit["seconds"],
                    "train_images_per_second": fit["train_images_per_second"], "threads": torch.get_num_threads(),
                    "checkpoint": str(cache), "best_checkpoint": fit["best"], **(extra or {})},
    }


def _prepare(cfg: DictConfig, out_dir: Path) -> tuple[torch.device, Path]:
    check_task(cfg)
    device = resolve_device(cfg.hardware)
    pl.seed_everything(cfg.task.get("seed", 0), verbose=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return device, out_dir


def run_train_half(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Stage 1: train a HalfModel. Returns the results dict (also written to results.json)."""
    device, out_dir = _prepare(cfg, out_dir)
    class_names, folder = dataset_classes(cfg)
    config = model_config(cfg, class_names)
    data, samples, sample_labels = build_data(cfg, config.input_size, class_names, folder)
    net = HalfModel(config)
    fit = fit_stage(cfg, out_dir, _module(cfg, net, "half", device), data, samples, sample_labels, class_names)
    best = _best_net("half", fit["best"], net)
    data.setup("validate")
    scores = evaluate(best, data.val_dataloader(), device)
    best.cpu()
    cache = cache_path("half")
    save_state(best, cache)
    save_state(best, out_dir / "hrcam_half.pt")
    if cache_path("full").is_file():
        print(f"vizlab: note: {cache_path('full')} was trained from an earlier half model; "
              "run task=train_full again to match this one.")
    results = _results(cfg, best, fit, scores, cache)
    write_json_atomic(out_dir / "results.json", results)
    print(f"vizlab: hrcam_half val accuracy {scores['val_acc']:.4f} on {scores['num_samples']} images "
          f"({fit['epochs']} epochs, {fit['seconds']:.1f} s) → {cache}")
    return results


def load_half(cfg: DictConfig) -> tuple[HalfModel, Path]:
    """The stage-1 model train_full starts from: task.half_checkpoint, else the cache."""
    given = cfg.task.get("half_checkpoint")
    path = Path(given).expanduser() if given else cache_path("half")
    if not path.is_file():
        raise CheckpointError(
            f"task=train_full needs a trained HalfModel but there is no checkpoint at {path}; run "
            "`python run.py task=train_half` first with the same dataset and model options (e.g. both with "
            "experiment=hrcam_shapes), or set task.half_checkpoint=PATH."
        )
    return build_from_state(read_checkpoint(path), "half", None, str(path)), path


def run_train_full(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Stage 2: train the expansion path of a FullModel built from the half checkpoint."""
    device, out_dir = _prepare(cfg, out_dir)
    half, half_path = load_half(cfg)
    class_names, folder = dataset_classes(cfg)
    hc = half.config
    wanted = cfg.model.get("num_classes")
    if wanted is not None and wanted != hc.num_classes:
        raise CheckpointError(f"the half checkpoint {half_path} has {hc.num_classes} classes but "
                              f"model.num_classes={wanted}; set model.num_classes=null or train the half model again.")
    if len(class_names) != hc.num_classes:
        raise CheckpointError(f"the half checkpoint {half_path} has {hc.num_classes} classes but dataset="
                              f"{cfg.dataset.name} has {len(class_names)}; train stage 2 on the data of stage 1.")
    if hc.class_names and list(hc.class_names) != class_names:
        raise CheckpointError(f"the half checkpoint {half_path} was trained on classes {list(hc.class_names)[:6]} "
                              f"but the dataset has {class_names[:6]}; train stage 2 on the data of stage 1.")
    differ = {k: (cfg.model.get(k), getattr(hc, k)) for k in ARCH_KEYS
              if cfg.model.get(k) is not None and cfg.model.get(k) != getattr(hc, k)}
    if differ:
        print("vizlab: note: using the half checkpoint's architecture ("
              + ", ".join(f"{k}={b}, config says {a}" for k, (a, b) in differ.items()) + ").")
    full = FullModel(hc)
    copied = transfer_half_weights(half, full)
    print(f"vizlab: copied and verified {len(copied)} tensors from {half_path} into the full model.")
    data, samples, sample_labels = build_data(cfg, hc.input_size, class_names, folder)
    fit = fit_stage(cfg, out_dir, _module(cfg, full, "full", device), data, samples, sample_labels, class_names)
    best = _best_net("full", fit["best"], full)
    check_weights(half, best)  # the classifier must be untouched by stage 2
    data.setup("validate")
    scores = evaluate(best, data.val_dataloader(), device)
    half_scores = evaluate(half, data.val_dataloader(), device)
    best.cpu()
    cache = cache_path("full")
    save_state(best, cache)
    save_state(best, out_dir / "hrcam_full.pt")
    results = _results(cfg, best, fit, scores, cache, {
        "half_checkpoint": str(half_path), "transferred_tensors": len(copied), "classifier_unchanged": True,
        "half_val_acc": half_scores["val_acc"], "trained_parameters": sum(p.numel() for p in best.expansion_parameters()),
    })
    write_json_atomic(out_dir / "results.json", results)
    print(f"vizlab: hrcam_full val accuracy {scores['val_acc']:.4f} (half {half_scores['val_acc']:.4f}), "
          f"reconstruction MSE {scores['val_recon']:.4f} ({fit['epochs']} epochs, {fit['seconds']:.1f} s) → {cache}")
    return results


__all__ = ["run_train_full", "run_train_half"]
