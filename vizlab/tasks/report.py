"""task=report: tables and a heatmap gallery for a finished sweep.

    python run.py task=report sweep_dir=outputs/multirun/explain/<date>/<time>

writes report.csv, report.md and report.html into the sweep directory (or task.out_dir).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vizlab.errors import ConfigError
from vizlab.io import write_json_atomic
from vizlab.viz.report import build_report


def sweep_dir_of(cfg: DictConfig) -> str:
    """The top-level `sweep_dir` key, else task.sweep_dir; a ConfigError if neither is set."""
    sweep = cfg.get("sweep_dir") or cfg.task.get("sweep_dir")
    if not sweep:
        raise ConfigError("task=report needs the directory of a sweep: "
                          "python run.py task=report sweep_dir=outputs/multirun/explain/<date>/<time>")
    return str(sweep)


def run_report(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Run task=report: write the sweep's report and a results.json (task: report) into `out_dir`."""
    sweep = sweep_dir_of(cfg)
    report = build_report(sweep, cfg.task.get("out_dir"))
    for path in report["files"]:
        print(f"vizlab: report: {path}")
    for job in report["summary"]["failed"]:
        print(f"vizlab: report: failed job {job['job']}: {job['reason']}")
    for job in report["summary"]["incomplete"]:
        print(f"vizlab: report: skipped incomplete job {job['job']}: {job['reason']}")
    results = {"task": "report", "complete": True, "sweep_dir": str(Path(sweep).expanduser().resolve()),
               "summary": report["summary"], "files": report["files"]}
    write_json_atomic(out_dir / "results.json", results)
    return results
