"""What run.py dispatches to. `run_task(cfg)` runs cfg.task.name inside the Hydra job directory.

A VizlabError (bad config or input) is printed as one line, the job directory is cleaned of
what this run wrote, and the process exits with status 2.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vizlab.errors import VizlabError, unknown_choice
from vizlab.tasks.explain import run_explain

TASKS: dict[str, Callable[[DictConfig, Path], dict[str, Any]]] = {"explain": run_explain}


def hydra_job() -> tuple[Path, str] | None:
    """(output directory, job name) of the running Hydra job, or None outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        return Path(hc.runtime.output_dir), hc.job.name
    except ValueError:
        return None


def remove_run_outputs(out_dir: Path, job_name: str | None) -> None:
    """Delete what a failed run wrote: staging, and under Hydra its .hydra/ and job log;
    then the directory itself if nothing else is in it."""
    shutil.rmtree(out_dir / ".staging", ignore_errors=True)
    if job_name is None:
        return
    shutil.rmtree(out_dir / ".hydra", ignore_errors=True)
    (out_dir / f"{job_name}.log").unlink(missing_ok=True)
    try:
        out_dir.rmdir()
    except OSError:
        pass


def run_task(cfg: DictConfig) -> dict[str, Any]:
    job = hydra_job()
    out_dir, job_name = job if job else (Path.cwd(), None)
    try:
        name = cfg.task.name
        if name not in TASKS:
            raise unknown_choice("task", name, TASKS)
        results = TASKS[name](cfg, out_dir)
    except VizlabError as exc:
        remove_run_outputs(out_dir, job_name)
        print(f"vizlab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except BaseException:
        remove_run_outputs(out_dir, job_name)
        raise
    print(f"vizlab: {name} done: {results['summary']['num_samples']} samples → {out_dir}")
    print(f"vizlab: results: {out_dir / 'results.json'}")
    if (out_dir / "heatmaps").exists():
        print(f"vizlab: heatmaps: {out_dir / 'heatmaps'}")
    return results
