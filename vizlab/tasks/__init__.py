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
from vizlab.tasks.evaluate_classifier import run_evaluate_classifier
from vizlab.tasks.explain import run_explain
from vizlab.tasks.featvis import run_featvis
from vizlab.tasks.report import run_report
from vizlab.tasks.train import run_train
from vizlab.tasks.train_hrcam import run_train_full, run_train_half

TASKS: dict[str, Callable[[DictConfig, Path], dict[str, Any]]] = {"explain": run_explain, "report": run_report, "train": run_train}
TASKS.update({"train_half": run_train_half, "train_full": run_train_full,
              "evaluate_classifier": run_evaluate_classifier, "featvis": run_featvis})


def hydra_job() -> tuple[Path, str] | None:
    """(output directory, job name) of the running Hydra job, or None outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        return Path(hc.runtime.output_dir), hc.job.name
    except ValueError:
        return None


RESUMABLE = frozenset({"checkpoints"})  # kept (with .hydra/) when a run is interrupted: task.resume needs them


def remove_run_outputs(out_dir: Path, job_name: str | None, before: set[str], stop_at: Path | None = None,
                       keep: frozenset[str] = frozenset()) -> None:
    """Delete what a failed run wrote into its Hydra job directory: every entry that was not there
    when the task started, plus Hydra's .hydra/ and job log if the directory was fresh; then the
    directory itself if empty. Entries that were there before (earlier results) are kept, and so
    are the entries named in `keep` (with Hydra's files) if the run wrote them.
    Outside Hydra only the staging folder is removed."""
    shutil.rmtree(out_dir / ".staging", ignore_errors=True)
    if job_name is None or not out_dir.is_dir():
        return
    hydra_own = {".hydra", f"{job_name}.log"}
    doomed = {p.name for p in out_dir.iterdir()} - before
    if before <= hydra_own:
        doomed |= hydra_own
    if doomed & keep:
        print(f"vizlab: interrupted; kept {', '.join(sorted(doomed & keep))} in {out_dir} "
              "(training tasks resume with task.resume=<that dir>/checkpoints/last.ckpt)", file=sys.stderr)
        doomed -= keep | hydra_own
    for name in doomed:
        entry = out_dir / name
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    remove_empty_dirs(out_dir, stop_at)


def remove_empty_dirs(path: Path, stop_at: Path | None) -> None:
    """rmdir `path` and its empty parents, up to (not including) `stop_at`; only inside `stop_at`."""
    path = path.resolve()
    stop = stop_at.resolve() if stop_at is not None else path.parent
    if stop not in path.parents:
        stop = path.parent
    while path != stop:
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent


def output_root(cfg: DictConfig) -> Path | None:
    root = cfg.get("paths", {}).get("output_root")
    return Path(root) if root else None


def run_task(cfg: DictConfig) -> dict[str, Any]:
    job = hydra_job()
    out_dir, job_name = job if job else (Path.cwd(), None)
    before = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else set()
    try:
        name = cfg.task.name
        if name not in TASKS:
            raise unknown_choice("task", name, TASKS)
        results = TASKS[name](cfg, out_dir)
    except VizlabError as exc:
        remove_run_outputs(out_dir, job_name, before, output_root(cfg))
        print(f"vizlab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except BaseException:
        remove_run_outputs(out_dir, job_name, before, output_root(cfg), keep=RESUMABLE)
        raise
    print(f"vizlab: {name} done: {results['summary']['num_samples']} samples → {out_dir}")
    print(f"vizlab: results: {out_dir / 'results.json'}")
    if (out_dir / "heatmaps").exists():
        print(f"vizlab: heatmaps: {out_dir / 'heatmaps'}")
    return results
