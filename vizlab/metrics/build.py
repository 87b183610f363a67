"""Metrics from the `metric` config group: {name: options} → {name: torchmetrics Metric}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from torchmetrics import Metric

from vizlab.errors import ConfigError, unknown_choice
from vizlab.metrics.deletion_insertion import DeletionInsertion
from vizlab.metrics.localisation import EnergyPointing, MaskIoU, ObjectRecall, PointingGame

METRICS: dict[str, type] = {"deletion_insertion": DeletionInsertion, "pointing_game": PointingGame,
                            "mask_iou": MaskIoU, "energy_pointing": EnergyPointing, "object_recall": ObjectRecall}
NEEDS_MASKS = ("pointing_game", "mask_iou", "energy_pointing", "object_recall")


def build_metrics(cfg: Mapping[str, Any] | None, model: nn.Module, has_masks: bool) -> dict[str, Metric]:
    """Instantiate every configured metric; localisation metrics need a dataset with masks."""
    metrics: dict[str, Metric] = {}
    for name, options in (cfg or {}).items():
        if name not in METRICS:
            raise unknown_choice("metric", name, METRICS)
        if name in NEEDS_MASKS and not has_masks:
            raise ConfigError(f"metric {name} needs ground-truth object masks, which this dataset does not have; "
                              "use dataset=synthetic_shapes (or a dataset with masks), or drop the metric.")
        options = dict(options or {})
        try:
            metrics[name] = METRICS[name](model, **options) if name == "deletion_insertion" else METRICS[name](**options)
        except TypeError as exc:
            raise ConfigError(f"Bad option for metric {name}: {exc}") from exc
    return metrics


def metric_protocols(metrics: Mapping[str, Metric]) -> dict[str, Any]:
    """Every metric's parameters, for results.json."""
    out: dict[str, Any] = {}
    for name, metric in metrics.items():
        if isinstance(metric, DeletionInsertion):
            out[name] = metric.protocol()
        else:
            out[name] = {k: getattr(metric, k) for k in ("tolerance", "threshold", "peak", "area", "frames", "keep_threshold")
                         if hasattr(metric, k)}
    return out
