"""`ExplainModule`: a frozen classifier + an attribution method + metrics, run by `trainer.test`.

Each test step explains a batch, scores it with every metric, writes the sample files and keeps
one record per sample. At the end of the epoch the records of all ranks are gathered (each
sample exactly once, see ExplainDataModule), the torchmetrics summaries are computed (synced
across ranks) and logged, and rank 0 writes `records.json` into the output folder. Pictures and
the per-sample table are logged afterwards by the launching process (`vizlab.loggers.log_media`),
which owns the W&B run even when DDP workers were spawned.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import nn
from torchmetrics import Metric

from vizlab.errors import ConfigError
from vizlab.io import write_json_atomic
from vizlab.methods.base import AttributionMethod
from vizlab.methods.targets import expand_batch, is_multi_target
from vizlab.models import ZooModel
from vizlab.viz.outputs import SampleWriter

RECORDS = "records.json"


def batch_targets(target: Any, labels: torch.Tensor, num_classes: int) -> torch.Tensor | int | None:
    """task.target → what the method takes: None (predicted), an int, or the labels."""
    if target != "label":
        return target
    if (labels < 0).any() or (labels >= num_classes).any():
        raise ConfigError("task.target=label needs every sample to have a label within the model's classes; "
                          "this dataset has unlabelled or out-of-range samples.")
    return labels


class ExplainModule(pl.LightningModule):
    """Run `method` over test batches of {"image" (N, C, *S) in [0, 1], "label", "name", "index"[, "mask"]}."""

    def __init__(self, model: ZooModel, method: AttributionMethod, method_name: str,
                 metrics: dict[str, Metric] | None = None, target: Any = None,
                 writer: SampleWriter | None = None, out_dir: Path | None = None, oracle_check: bool = False) -> None:
        super().__init__()
        self.oracle_check = oracle_check  # extremal family on data with object masks: task.oracle_check
        self.model = model
        self.method = method
        self.method_name = method_name
        self.metrics = nn.ModuleDict(metrics or {})
        self.target = target
        self.writer = writer
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.records: list[dict[str, Any]] = []
        self.seconds = 0.0
        self.curves = CurveAverage()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        images = batch["image"]
        x = self.model.normalize(images)
        if is_multi_target(self.target):  # one row per (sample, target): vizlab.methods.targets
            batch, x, target = expand_batch(self.target, batch, x, self.model)
            images = batch["image"]
        else:
            target = batch_targets(self.target, batch["label"], self.model.info.num_classes)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        info = self.method(x, target, return_info=True)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        scores: dict[str, torch.Tensor] = {}
        for metric in self.metrics.values():
            scores.update(metric.evaluate_batch(x, info.saliency, info.target, batch.get("mask")))
        report = None
        if self.oracle_check:
            from vizlab.methods.perturbation.oracle import optimality_check

            report = optimality_check(self.method, x, info.target, batch["mask"], info=info)
        probs = info.logits.float().softmax(1)
        for i in range(x.shape[0]):
            self.records.append(self.sample_record(batch, i, info, probs, scores, elapsed / x.shape[0], images, report))
        self.curves.add(self.method.curves(info))

    def sample_record(self, batch, i, info, probs, scores, seconds, images, report=None) -> dict[str, Any]:
        model = self.model
        t, pred = int(info.target[i]), int(probs[i].argmax())
        record = {
            "index": int(batch["index"][i]), "name": batch["name"][i], "label": int(batch["label"][i]),
            "target": t, "target_name": model.class_name(t), "target_prob": float(probs[i, t]),
            "predicted": pred, "predicted_name": model.class_name(pred), "predicted_prob": float(probs[i, pred]),
            "seconds": seconds, "metrics": {k: float(v[i]) for k, v in scores.items()}, "files": [],
        }
        details = self.method.sample_details(info, i)
        has_object = report is not None and bool(report.valid[i].all())
        if report is not None:  # per area: the objective of the optimised and of the oracle mask
            details = {**details, "optimised_objective": report.optimised_objective[i].tolist(),
                       "oracle_objective": report.oracle_objective[i].tolist(),
                       "as_good_as_oracle": report.passed[i].tolist() if has_object else None}
        if details:
            record["details"] = details
        stem = record["name"]
        if "target_rank" in batch:  # several targets per sample: the files name the target
            record["target_rank"] = int(batch["target_rank"][i])
            stem = f"{stem}_t{t}"
        if self.writer is not None:
            caption = f"{self.method_name}: {t} {model.class_name(t)} (p={record['target_prob']:.2f})"
            record["files"] = self.writer.write(record["index"], stem, images[i], info.saliency[i],
                                                info.raw[i], caption)
            drawn = self.method.sample_figures(info, i, images[i]) if self.writer.save_overlays else {}
            if has_object and self.writer.save_overlays:
                from vizlab.methods.perturbation.oracle import oracle_figure

                for a in range(report.passed.shape[1]):  # the optimised mask next to the oracle's, per area
                    key = "oracle" if report.passed.shape[1] == 1 else f"oracle_area{a}"
                    drawn[key] = oracle_figure(images[i].detach().cpu(), report, info.extras["masks"], index=i, area=a)
            figures = self.writer.write_figures(record["index"], stem, drawn)
            if figures:
                record["figures"] = figures
                record["files"] += list(figures.values())
        return record

    def gathered(self) -> tuple[list[dict[str, Any]], float, dict[str, list[float]]]:
        """All ranks' records (sorted by index), the summed method time and the mean curves."""
        records, seconds, curves = self.records, self.seconds, self.curves
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, (records, seconds, curves))
            records = [r for part, _, _ in parts for r in part]
            seconds = sum(s for _, s, _ in parts)
            curves = CurveAverage()
            for _, _, part in parts:
                curves.merge(part)
        return sorted(records, key=lambda r: r["index"]), seconds, curves.means()

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in self.metrics.values():
            out.update(metric.summary())
        return out

    def on_test_epoch_end(self) -> None:
        records, seconds, curves = self.gathered()
        summary = self.summary()
        if summary:
            self.log_dict({f"test/{k}": v for k, v in summary.items()}, sync_dist=False, rank_zero_only=True)
        if self.trainer.is_global_zero:
            if self.out_dir is not None:
                write_json_atomic(self.out_dir / RECORDS, {"samples": records, "metrics": summary,
                                                           "seconds_total": seconds, "curves": curves})


class CurveAverage:
    """Running per-iteration mean of a method's curves over samples (NaN entries are skipped).

    add({"name": (N, iterations)}) accumulates sums and counts (float64, on the CPU); curves of
    different lengths (early stopping) are padded. means() → {"name": [mean at iteration t, ...]}.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}

    def add(self, curves: dict[str, torch.Tensor]) -> None:
        for name, values in curves.items():
            values = values.detach().double().cpu().reshape(-1, values.shape[-1])
            seen = torch.isfinite(values)
            self._accumulate(name, torch.where(seen, values, 0).sum(0), seen.sum(0).double())

    def merge(self, other: CurveAverage) -> None:
        for name in other.sums:
            self._accumulate(name, other.sums[name], other.counts[name])

    def _accumulate(self, name: str, total: torch.Tensor, count: torch.Tensor) -> None:
        if name not in self.sums:
            self.sums[name], self.counts[name] = total.clone(), count.clone()
            return
        size = max(total.numel(), self.sums[name].numel())
        self.sums[name] = _padded(self.sums[name], size) + _padded(total, size)
        self.counts[name] = _padded(self.counts[name], size) + _padded(count, size)

    def means(self) -> dict[str, list[float]]:
        out = {}
        for name, total in self.sums.items():
            count = self.counts[name]
            out[name] = [float(v) if c > 0 else None for v, c in zip((total / count.clamp_min(1)).tolist(),
                                                                      count.tolist(), strict=True)]
        return out


def _padded(values: torch.Tensor, size: int) -> torch.Tensor:
    """(L,) → (size,) with zeros appended."""
    return torch.nn.functional.pad(values, (0, size - values.numel()))
