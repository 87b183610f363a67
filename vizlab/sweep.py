"""Multirun bookkeeping, as a Hydra callback (conf/hydra/default.yaml: hydra.callbacks.vizlab_sweep).

- (Hydra's basic sweeper composes every job's config before it launches any, so a typo in one
  combination stops the sweep at once; `vizlab.entry` prints it as one line.)
- After each job (wherever the launcher runs it: this process, joblib workers, submitit jobs),
  its outcome goes to <sweep dir>/.vizlab-jobs/<num>.json: done, skipped (complete results were
  there), or failed with the one-line reason (the job directory's failed.json has the details).
- At the end: one summary line, one line per failed job, and exit status 2 if any job failed on
  bad config or input (1 if one failed otherwise) — the other jobs ran regardless.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vizlab.io import write_json_atomic

JOBS = ".vizlab-jobs"


def is_multirun(config: DictConfig) -> bool:
    from hydra.types import RunMode

    return config.hydra.get("mode") == RunMode.MULTIRUN


def job_outcome(job_return: Any) -> dict[str, Any]:
    """{"status": done | skipped | failed[, "error", "type"]} from Hydra's JobReturn."""
    from hydra.core.utils import JobStatus

    from vizlab.errors import VizlabError
    from vizlab.tasks.runner import one_line

    value = job_return._return_value  # the property raises for failed jobs
    if job_return.status == JobStatus.FAILED:
        return {"status": "failed", "error": one_line(value), "type": type(value).__name__,
                "bad_input": isinstance(value, VizlabError)}
    if isinstance(value, dict) and value.get("status") in ("done", "skipped", "failed"):
        return {k: value[k] for k in ("status", "error", "type", "bad_input") if k in value}
    return {"status": "done"}


def sweep_root(job_dir: Path, subdir: str) -> Path:
    """The sweep directory of a job directory `<sweep>/<subdir>`."""
    depth = len(Path(subdir).parts)
    return job_dir.parents[depth - 1] if depth else job_dir


class SweepSummary(Callback):
    """Records each multirun job's outcome and prints the sweep's summary (see the module docstring)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import shutil

        shutil.rmtree(Path(config.hydra.sweep.dir) / JOBS, ignore_errors=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not is_multirun(config):
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        record = {"job": config.hydra.job.num, "dir": str(job_dir),
                  "overrides": [str(o) for o in config.hydra.overrides.task], **job_outcome(job_return)}
        write_json_atomic(sweep_root(job_dir, str(config.hydra.sweep.subdir)) / JOBS / f"{record['job']}.json",
                          record)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        records = read_outcomes(sweep)
        failed = [r for r in records if r["status"] == "failed"]
        counts = {s: sum(r["status"] == s for r in records) for s in ("done", "skipped", "failed")}
        print(f"vizlab: sweep: {len(records)} jobs: {counts['done']} done, {counts['skipped']} skipped as complete, "
              f"{counts['failed']} failed → {sweep}", flush=True)
        for r in failed:
            print(f"vizlab: failed job {r['job']} ({' '.join(r['overrides']) or 'no overrides'}): {r.get('error')}",
                  file=sys.stderr)
        if failed:
            print(f"vizlab: {len(failed)} of {len(records)} jobs failed (each job directory's failed.json says why); "
                  "fix them and re-run the same command with hydra.sweep.dir=<that dir>: finished jobs are skipped.",
                  file=sys.stderr)
            sys.exit(2 if all(r.get("bad_input") for r in failed) else 1)


def read_outcomes(sweep: Path) -> list[dict[str, Any]]:
    """The job outcomes recorded under `sweep`, by job number."""
    records = []
    for path in (sweep / JOBS).glob("*.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: r.get("job", 0))
