"""Classification report metrics (torchmetrics, DDP-synced): accuracy, top-k, macro/micro P/R/F1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from vizlab.errors import ConfigError


def classification_metrics(num_classes: int, top_k: Sequence[int] = (1, 5)) -> MetricCollection:
    """accuracy (top-1, micro), top{k}_accuracy for every k in `top_k` with 1 < k < num_classes,
    precision/recall/f1 macro and micro (micro = accuracy for single-label data), per-class
    precision/recall/f1 and the confusion matrix (rows: true class, columns: predicted)."""
    if num_classes < 2:
        raise ConfigError(f"a classification report needs >= 2 classes, got {num_classes}.")
    ks = sorted({int(k) for k in top_k})
    if any(k < 1 for k in ks):
        raise ConfigError(f"task.top_k values must be >= 1, got {list(top_k)}.")
    metrics: dict[str, Any] = {"accuracy": MulticlassAccuracy(num_classes, average="micro")}
    for k in ks:
        if 1 < k < num_classes:
            metrics[f"top{k}_accuracy"] = MulticlassAccuracy(num_classes, top_k=k, average="micro")
    for avg in ("macro", "micro"):
        metrics[f"precision_{avg}"] = MulticlassPrecision(num_classes, average=avg)
        metrics[f"recall_{avg}"] = MulticlassRecall(num_classes, average=avg)
        metrics[f"f1_{avg}"] = MulticlassF1Score(num_classes, average=avg)
    metrics["precision_per_class"] = MulticlassPrecision(num_classes, average=None)
    metrics["recall_per_class"] = MulticlassRecall(num_classes, average=None)
    metrics["f1_per_class"] = MulticlassF1Score(num_classes, average=None)
    metrics["confusion_matrix"] = MulticlassConfusionMatrix(num_classes)
    return MetricCollection(metrics)


def report(values: dict[str, torch.Tensor], class_names: Sequence[str] = ()) -> dict[str, Any]:
    """Computed collection → {"summary": scalars, "per_class": {name: {...}}, "confusion_matrix": rows}."""
    cm = values["confusion_matrix"].long()
    k = cm.shape[0]
    names = [class_names[i] if i < len(class_names) else str(i) for i in range(k)]
    summary = {key: float(v) for key, v in values.items() if v.dim() == 0}
    per_class = {names[i]: {"precision": float(values["precision_per_class"][i]),
                            "recall": float(values["recall_per_class"][i]),
                            "f1": float(values["f1_per_class"][i]), "support": int(cm[i].sum())}
                 for i in range(k)}
    return {"summary": summary, "per_class": per_class, "confusion_matrix": cm.tolist()}


__all__ = ["classification_metrics", "report"]
