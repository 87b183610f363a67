"""task=evaluate_classifier: classification report of any zoo model on a labelled dataset.

    python run.py task=evaluate_classifier model=hrcam_full dataset=synthetic_shapes dataset.num_samples=1000
    python run.py task=evaluate_classifier model=hrcam_half dataset=image_folder dataset.root=/data/animals

Accuracy, top-k accuracy, macro and micro precision / recall / F1, per-class scores and the
confusion matrix (torchmetrics, synced across DDP ranks; each sample is scored exactly once).
With dataset=image_folder, `root/<task.split>` is used when it exists (the test/ half of the
tree task=train_half trains on). results.json: {"summary": {"num_samples", "accuracy",
"top5_accuracy", "precision_macro", ...}, "per_class", "confusion_matrix", ...}.

For HR-CAM this is the paper's consistency check: stage 2 freezes the classifier, so
model=hrcam_half and model=hrcam_full must score the same.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from vizlab.data import build_dataset
from vizlab.errors import ConfigError
from vizlab.io import write_json_atomic
from vizlab.lit.explain_data import ExplainDataModule
from vizlab.loggers import build_loggers, finish_loggers
from vizlab.metrics.classification import classification_metrics, report
from vizlab.models import ZooModel, load_model
from vizlab.tasks.common import resolve_device, trainer_hardware


class ClassificationEval(pl.LightningModule):
    """trainer.test over {"image" in [0, 1], "label"} batches: updates a classification MetricCollection."""

    def __init__(self, model: ZooModel, top_k: list[int]) -> None:
        super().__init__()
        self.model = model
        self.metrics = classification_metrics(model.info.num_classes, top_k)
        self.values: dict[str, torch.Tensor] = {}

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        labels = batch["label"]
        k = self.model.info.num_classes
        if (labels < 0).any() or (labels >= k).any():
            bad = int(labels[(labels < 0) | (labels >= k)][0])
            raise ConfigError(f"label {bad} is outside the model's {k} classes (0..{k - 1}); the dataset must be "
                              "labelled with the model's classes (unlabelled samples have label -1).")
        with torch.no_grad():
            logits = self.model(self.model.normalize(batch["image"].float()))
        self.metrics.update(logits.float(), labels)

    def on_test_epoch_end(self) -> None:
        self.values = {k: v.detach().cpu() for k, v in self.metrics.compute().items()}
        scalars = {f"test/{k}": float(v) for k, v in self.values.items() if v.dim() == 0}
        self.log_dict(scalars, sync_dist=False, rank_zero_only=True)


def _dataset_cfg(cfg: DictConfig) -> dict[str, Any]:
    data = OmegaConf.to_container(cfg.dataset, resolve=True)
    split = cfg.task.get("split")
    if data.get("name") == "image_folder" and data.get("root") and split:
        sub = Path(data["root"]).expanduser() / split
        if sub.is_dir():
            data["root"] = str(sub)
    return data


def run_evaluate_classifier(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Run task=evaluate_classifier; returns the results dict (also written to results.json)."""
    task = cfg.task
    if isinstance(task.batch_size, bool) or not isinstance(task.batch_size, int) or task.batch_size < 1:
        raise ConfigError(f"task.batch_size must be an integer >= 1, got {task.batch_size!r}.")
    top_k = list(task.get("top_k") or [1])
    device = resolve_device(cfg.hardware)
    pl.seed_everything(cfg.get("seed", 0), verbose=False)
    single = cfg.hardware.get("devices", 1) == 1
    model = load_model(cfg.model.name, checkpoint=cfg.model.get("checkpoint"), num_classes=cfg.model.get("num_classes"),
                       pretrained=cfg.model.get("pretrained"), device=device if single else "cpu")
    data_cfg = _dataset_cfg(cfg)
    dataset = build_dataset(data_cfg, model.info.input_size, model.info.is_video, model.info.frames)
    if task.get("max_samples") is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(task.max_samples, len(dataset))))
    labels = getattr(dataset, "labels", None)
    if labels is not None and any(lab < 0 for lab in labels):
        raise ConfigError(f"dataset={cfg.dataset.name} has unlabelled samples; task=evaluate_classifier needs labels "
                          "(dataset=image_folder, synthetic_shapes, ...).")
    module = ClassificationEval(model, top_k)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loggers = build_loggers(cfg.logger, out_dir, f"evaluate-{cfg.model.name}-{cfg.dataset.name}",
                            OmegaConf.to_container(cfg, resolve=True))
    hw = trainer_hardware(cfg.hardware)
    hw.pop("precision")
    trainer = pl.Trainer(**hw, logger=loggers or False, enable_checkpointing=False, enable_model_summary=False,
                         use_distributed_sampler=False, default_root_dir=str(out_dir),
                         enable_progress_bar=bool(task.get("progress_bar", False)))
    start = time.perf_counter()
    try:
        trainer.test(module, datamodule=ExplainDataModule(dataset, task.batch_size, task.get("num_workers", 0)),
                     verbose=False)
    finally:
        finish_loggers(loggers)
    seconds = time.perf_counter() - start
    rep = report(module.values, model.info.class_names)
    num = int(sum(row["support"] for row in rep["per_class"].values()))
    results = {
        "task": "evaluate_classifier",
        "model": {"name": model.info.name, "checkpoint": cfg.model.get("checkpoint"),
                  "num_classes": model.info.num_classes, "input_size": model.info.input_size},
        "dataset": data_cfg,
        "summary": {"num_samples": num, **rep["summary"], "seconds": seconds,
                    "images_per_second": num / seconds if seconds else None},
        "per_class": rep["per_class"],
        "confusion_matrix": rep["confusion_matrix"],
    }
    write_json_atomic(out_dir / "results.json", results)
    s = rep["summary"]
    extra = "".join(f", {k} {v:.4f}" for k, v in s.items() if k.startswith("top"))
    print(f"vizlab: {model.info.name} accuracy {s['accuracy']:.4f}{extra}, macro F1 {s['f1_macro']:.4f} "
          f"on {num} samples")
    return results


__all__ = ["ClassificationEval", "run_evaluate_classifier"]
