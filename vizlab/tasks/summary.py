"""What a finished run prints: one line saying it is done, for task=explain a short table (method,
model, samples, each metric's mean, seconds per sample), then where the files are.

    vizlab: explain done: 4 samples → outputs/explain/2026-11-22/00-29-19
      method   model               samples  deletion_auc  insertion_auc  s/sample
      gradcam  efficientnet_lite0        4         0.119          0.470     0.012
    vizlab: results: outputs/explain/2026-11-22/00-29-19/results.json
    vizlab: heatmaps: outputs/explain/2026-11-22/00-29-19/heatmaps
    vizlab: W&B run (offline): outputs/.../wandb/offline-run-... (`wandb sync` uploads it)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

NOT_METRICS = frozenset({"num_samples", "seconds_total", "seconds_per_sample", "wall_seconds", "num_skipped"})


def metric_means(summary: dict[str, Any]) -> dict[str, float]:
    """The summary's metric values (every finite number that is not a count or a time)."""
    return {k: float(v) for k, v in summary.items() if k not in NOT_METRICS and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v)}


def explain_table(results: dict[str, Any]) -> list[str]:
    """Two aligned lines: the header and the run's row."""
    summary = results.get("summary", {})
    cells = {"method": str(results.get("method", {}).get("name", "?")),
             "model": str(results.get("model", {}).get("name", "?")),
             "samples": str(summary.get("num_samples", 0))}
    cells.update({k: f"{v:.3f}" for k, v in metric_means(summary).items()})
    cells["s/sample"] = f"{summary.get('seconds_per_sample', float('nan')):.4g}"
    widths = {k: max(len(k), len(v)) for k, v in cells.items()}
    left = ("method", "model")
    header = "  ".join(k.ljust(widths[k]) if k in left else k.rjust(widths[k]) for k in cells)
    row = "  ".join(v.ljust(widths[k]) if k in left else v.rjust(widths[k]) for k, v in cells.items())
    return [f"  {header}", f"  {row}"]


def wandb_run_dir(out_dir: Path) -> Path | None:
    """The newest W&B run folder under <job>/wandb/, if any."""
    runs = sorted((out_dir / "wandb").glob("*run-*"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def print_done(task: str, results: dict[str, Any], out_dir: Path) -> None:
    """Print the end-of-run summary of `task` to stdout."""
    count = results.get("summary", {}).get("num_samples", 0)
    print(f"vizlab: {task} done: {count} samples → {out_dir}")
    if results.get("task") == "explain":
        for line in explain_table(results):
            print(line)
    print(f"vizlab: results: {out_dir / 'results.json'}")
    for folder in ("heatmaps", "pyramid"):
        if (out_dir / folder).exists():
            print(f"vizlab: {folder}: {out_dir / folder}")
    run = wandb_run_dir(out_dir)
    if run is not None and run.name.startswith("offline-"):
        print(f"vizlab: W&B run (offline): {run} (`wandb sync` uploads it)")
    elif run is not None:
        print(f"vizlab: W&B run: {run}")
