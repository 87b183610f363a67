"""`run_task(cfg)`: run cfg.task.name inside its Hydra job directory, and clean up when it fails.

- Success: the job directory holds the task's outputs and `.hydra/` (the config that made them).
- Bad config or input (a VizlabError): one `vizlab: error:` line. A single run exits with status 2
  and leaves nothing behind; a job of a multirun writes `failed.json` (the error) next to its
  `.hydra/` and returns, so that the sweep goes on (`vizlab.sweep` prints the summary).
- Ctrl-C (anywhere, see `vizlab.interrupts`): the same clean-up, one line, exit status 130.
- Any other exception: a single run cleans up and re-raises (a traceback: a bug); a multirun job
  records it in failed.json, traceback included, and the sweep goes on.
- A finished job's `.hydra/` is never overwritten by a run that does not replace its results:
  Hydra writes the new config to `.hydra-pending/` (conf/hydra/default.yaml), which becomes
  `.hydra/` when the job directory had none or when the run succeeds, and is dropped otherwise.
"""

from __future__ import annotations

import logging
import shutil
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from vizlab import interrupts
from vizlab.errors import ConfigError, VizlabError, unknown_choice
from vizlab.io import write_json_atomic
from vizlab.validation import check_config

FAILED = "failed.json"          # a multirun job that failed: {"error", "type", "job", "overrides"[, "traceback"]}
PENDING = ".hydra-pending"      # hydra.output_subdir: the new config until the run succeeds
HYDRA = ".hydra"
RESUMABLE = frozenset({"checkpoints"})  # kept (with .hydra/) when a run is interrupted: task.resume needs them
SKIPPED_AS_COMPLETE = "skipped_as_complete"  # key a task sets in its returned results when it did not re-run


@dataclass
class Job:
    """The running Hydra job: its directory, job name (the log is <name>.log), multirun or not."""

    out_dir: Path
    name: str
    multirun: bool = False
    num: int | None = None
    overrides: list[str] = field(default_factory=list)


def hydra_job() -> tuple[Path, str] | None:
    """(output directory, job name) of the running Hydra job, or None outside Hydra."""
    job = current_job()
    return (job.out_dir, job.name) if job else None


def current_job() -> Job | None:
    """The running Hydra job, or None outside Hydra (e.g. the compose API in tests)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except ValueError:
        return None
    multirun = hc.mode == RunMode.MULTIRUN
    num = hc.job.get("num") if multirun else None
    return Job(Path(hc.runtime.output_dir), hc.job.name, multirun, num, [str(o) for o in hc.overrides.task])


def remove_run_outputs(out_dir: Path, job_name: str | None, before: set[str], stop_at: Path | None = None,
                       keep: frozenset[str] = frozenset(), keep_config: bool = False) -> set[str]:
    """Delete what a failed run wrote into its Hydra job directory: every entry that was not there
    when the task started, plus Hydra's .hydra/ and job log if the directory was fresh (unless
    `keep_config`: a failed multirun job keeps them next to its failed.json); then the directory
    itself if empty. Entries that were there before (earlier results) are kept, and so are the
    entries named in `keep` (with Hydra's files) if the run wrote them; returns those kept.
    Outside Hydra only the staging folder is removed."""
    shutil.rmtree(out_dir / ".staging", ignore_errors=True)
    if job_name is None or not out_dir.is_dir():
        return set()
    hydra_own = {HYDRA, PENDING, f"{job_name}.log"}
    doomed = {p.name for p in out_dir.iterdir()} - before
    if before <= hydra_own:
        doomed |= hydra_own
    if keep_config:
        doomed -= hydra_own - {PENDING}
    kept = doomed & keep
    if kept:
        doomed -= keep | hydra_own
    for name in doomed:
        entry = out_dir / name
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    remove_empty_dirs(out_dir, stop_at)
    return kept


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


def adopt_pending_config(out_dir: Path, replace: bool) -> None:
    """Make Hydra's new config (.hydra-pending/) the job's .hydra/: always when there is no .hydra/
    yet, over an existing one only with `replace` (the run's results replaced the old ones)."""
    pending, current = out_dir / PENDING, out_dir / HYDRA
    if not pending.is_dir():
        return
    if current.exists() and not replace:
        return
    if current.exists():
        shutil.rmtree(current)
    pending.rename(current)


def drop_pending_config(out_dir: Path) -> None:
    shutil.rmtree(out_dir / PENDING, ignore_errors=True)


def one_line(exc: BaseException) -> str:
    """The error message on one line (an error re-raised from a DataLoader worker carries the
    worker's traceback in its message: keep its last line)."""
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Original Traceback" in text and lines:
        last = lines[-1]
        return last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith("Error") and ": " in last else last
    return " ".join(lines)


LIGHTNING_NOISE = ("GPU available", "TPU available", "HPU available", "IPU available", "💡 Tip", "Tip:",
                   "Detected KeyboardInterrupt")  # vizlab says "interrupted" itself
LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                     "lightning_fabric.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropNoise(logging.Filter):
    """Drops Lightning's device banner and its advertising tip (nothing a user can act on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith(LIGHTNING_NOISE)


def quiet_libraries() -> None:
    """Silence library output a user cannot act on: Lightning's device banner and tips, and the
    deprecation warning Lightning's own code triggers in torch (`LeafSpec`)."""
    for name in LIGHTNING_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in log.filters):
            log.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r".*The anonymous setting has no effect")


def run_task(cfg: DictConfig) -> dict[str, Any]:
    """Run cfg.task.name in the Hydra job directory (the current directory outside Hydra).
    Returns the task's results plus "status": "done" or "skipped" (complete results were there),
    or, for a failed job of a multirun, {"status": "failed", "error": ...}."""
    from vizlab.tasks import TASKS

    interrupts.run_started()
    job = current_job()
    out_dir = job.out_dir if job else Path.cwd()
    before = {p.name for p in out_dir.iterdir()} - {PENDING} if out_dir.is_dir() else set()
    from vizlab.lit.hardware import launch_rank

    # ranks > 0 started by SLURM / submitit share rank 0's job directory: only rank 0 keeps its config
    owner = launch_rank(cfg.get("hardware") or {}) == 0
    if owner:
        adopt_pending_config(out_dir, replace=False)  # a fresh directory gets its .hydra/ at once
    name = str(cfg.get("task", {}).get("name"))
    try:
        quiet_libraries()
        check_config(cfg)
        if name not in TASKS:
            raise unknown_choice("task", name, TASKS)
        try:
            results = TASKS[name](cfg, out_dir)
        except OmegaConfBaseException as exc:  # e.g. an interpolation that does not resolve
            raise ConfigError(one_line(exc)) from exc
    except BaseException as exc:
        return failed(cfg, job, out_dir, before, exc)
    skipped = bool(results.pop(SKIPPED_AS_COMPLETE, False))
    if owner:
        adopt_pending_config(out_dir, replace=not skipped)
        drop_pending_config(out_dir)
        if job is not None:
            (out_dir / FAILED).unlink(missing_ok=True)
    if results.get("rank"):  # a DDP rank started by SLURM / submitit; rank 0 reports the job
        print(f"vizlab: {name} rank {results['rank']} done: {results['summary']['num_samples']} samples")
    elif not skipped:
        from vizlab.tasks.summary import print_done

        print_done(name, results, out_dir)
    return {**results, "status": "skipped" if skipped else "done"}


def kept_message(out_dir: Path, kept: set[str]) -> str:
    return (f"vizlab: kept {', '.join(sorted(kept))} in {out_dir} "
            "(training tasks resume with task.resume=<that dir>/checkpoints/last.ckpt)")


def interrupted_message(out_dir: Path, job: Job | None, kept: set[str]) -> str:
    if job is None:
        return "vizlab: interrupted"
    if kept:
        return "vizlab: interrupted; " + kept_message(out_dir, kept).removeprefix("vizlab: ")
    return f"vizlab: interrupted; removed this run's partial outputs in {out_dir}"


def failed(cfg: DictConfig, job: Job | None, out_dir: Path, before: set[str], exc: BaseException) -> dict[str, Any]:
    """Clean up after a failed run; exit (single run, Ctrl-C) or record failed.json (multirun job)."""
    interrupted = interrupts.was_interrupted(exc)
    bad_input = isinstance(exc, VizlabError)
    record = job is not None and job.multirun and isinstance(exc, Exception) and not interrupted
    keep = frozenset() if bad_input else RESUMABLE
    if record and "results.json" not in before:
        adopt_pending_config(out_dir, replace=True)  # no results to protect: .hydra/ describes this attempt
    kept = remove_run_outputs(out_dir, job.name if job else None, before, output_root(cfg), keep=keep,
                              keep_config=record)
    if job is not None:
        drop_pending_config(out_dir)
    if interrupted:
        interrupts.exit_interrupted(interrupted_message(out_dir, job, kept))
    if kept and not record:
        print(kept_message(out_dir, kept), file=sys.stderr)
    if not record:
        if bad_input:
            print(f"vizlab: error: {one_line(exc)}", file=sys.stderr)
            sys.exit(2)
        raise exc
    message = one_line(exc)
    info: dict[str, Any] = {"error": message, "type": type(exc).__name__, "job": job.num,
                            "overrides": job.overrides, "task": str(cfg.get("task", {}).get("name"))}
    if not bad_input:
        info["traceback"] = "".join(traceback.format_exception(exc))
    write_json_atomic(out_dir / FAILED, info)
    print(f"vizlab: error: {message} (job {job.num} failed: {out_dir / FAILED}; the sweep goes on)", file=sys.stderr)
    return {"task": info["task"], "status": "failed", "error": message, "type": info["type"], "bad_input": bad_input}
