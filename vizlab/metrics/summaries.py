"""What a metric declares about itself, so the explain loop, `vizlab.evaluate` and the sweep report
need no per-metric code: its config name, whether it needs the model and ground-truth masks, and
the summary numbers it reports with their direction.

Kept free of torch imports so that the sweep report can read the declarations cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """One number a metric reports per run (results.json "summary", W&B test/<key>, report column)."""

    key: str
    title: str
    higher_is_better: bool
    fmt: str = ".3f"

    @property
    def heading(self) -> str:
        return f"{self.title} ({'higher' if self.higher_is_better else 'lower'} is better)"


DELETION = Summary("deletion_auc", "Deletion AUC", higher_is_better=False)
INSERTION = Summary("insertion_auc", "Insertion AUC", higher_is_better=True)
POINTING = Summary("pointing_accuracy", "Pointing accuracy", higher_is_better=True)
MASK_IOU = Summary("mask_iou", "Mask IoU", higher_is_better=True)
ENERGY = Summary("energy_pointing", "Energy on the object", higher_is_better=True)
RECALL = Summary("object_recall", "Object recall at the area", higher_is_better=True)
SECONDS = Summary("seconds_per_sample", "Seconds per sample", higher_is_better=False, fmt=".4g")
