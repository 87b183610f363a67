"""What run.py dispatches to: `run_task(cfg)` runs cfg.task.name (one of TASKS) inside the Hydra job
directory; `vizlab.tasks.runner` says what happens when it fails (one line, exit 2, nothing left
behind; failed.json in a multirun job; exit 130 on Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vizlab.tasks.evaluate_classifier import run_evaluate_classifier
from vizlab.tasks.explain import run_explain
from vizlab.tasks.featvis import run_featvis
from vizlab.tasks.pyramid import run_pyramid
from vizlab.tasks.report import run_report
from vizlab.tasks.runner import RESUMABLE, hydra_job, output_root, remove_empty_dirs, remove_run_outputs, run_task
from vizlab.tasks.train import run_train
from vizlab.tasks.train_hrcam import run_train_full, run_train_half

TASKS: dict[str, Callable[[DictConfig, Path], dict[str, Any]]] = {"explain": run_explain, "report": run_report, "train": run_train}
TASKS.update({"train_half": run_train_half, "train_full": run_train_full,
              "evaluate_classifier": run_evaluate_classifier, "pyramid": run_pyramid, "featvis": run_featvis})

__all__ = ["RESUMABLE", "TASKS", "hydra_job", "output_root", "remove_empty_dirs", "remove_run_outputs", "run_task"]
