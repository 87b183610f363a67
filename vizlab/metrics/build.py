"""Metrics from the `metric` config group: {name: options} → {name: torchmetrics Metric}.

Each metric class declares its config `name`, whether it needs the model (`needs_model`) and
ground-truth masks (`needs_masks`), and the numbers it reports (`summaries`, with their direction);
nothing here or in the explain loop and sweep report special-cases a metric by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from torchmetrics import Metric

from vizlab.errors import ConfigError, unknown_choice
from vizlab.metrics.deletion_insertion import DeletionInsertion, DeletionInsertionConfig
from vizlab.metrics.localisation import EnergyPointing, MaskIoU, ObjectRecall, PointingGame
from vizlab.metrics.summaries import Summary
from vizlab.validation import check_fields, check_signature

METRICS: dict[str, type] = {cls.name: cls for cls in (DeletionInsertion, PointingGame, MaskIoU, EnergyPointing,
                                                          ObjectRecall)}


def all_summaries() -> tuple[Summary, ...]:
    """Every summary number any metric reports, in METRICS order."""
    return tuple(s for cls in METRICS.values() for s in cls.summaries)


def build_metric(name: str, model: nn.Module | None, **options: Any) -> Metric:
    """One metric by config name; options are its keyword options (ConfigError when unknown or bad)."""
    if name not in METRICS:
        raise unknown_choice("metric", name, METRICS)
    cls = METRICS[name]
    if cls is DeletionInsertion:  # its options are a dataclass's fields
        check_fields(f"metric.{name}", DeletionInsertionConfig, options)
    else:  # type and range of every option from the signature's hints (vizlab.validation)
        check_signature(f"metric.{name}", cls.__init__, options)
    try:
        return cls(model, **options) if cls.needs_model else cls(**options)
    except TypeError as exc:
        raise ConfigError(f"Bad option for metric {name}: {exc}") from exc


def build_metrics(cfg: Mapping[str, Any] | None, model: nn.Module, has_masks: bool) -> dict[str, Metric]:
    """Instantiate every configured metric; localisation metrics need a dataset with masks."""
    metrics: dict[str, Metric] = {}
    for name, options in (cfg or {}).items():
        if name in METRICS and METRICS[name].needs_masks and not has_masks:
            raise ConfigError(f"metric {name} needs ground-truth object masks, which this dataset does not have; "
                              "use dataset=synthetic_shapes (or a dataset with masks), or drop the metric.")
        metrics[name] = build_metric(name, model, **dict(options or {}))
    return metrics


def metric_protocols(metrics: Mapping[str, Metric]) -> dict[str, Any]:
    """Every metric's parameters, for results.json."""
    return {name: metric.protocol() for name, metric in metrics.items()}
