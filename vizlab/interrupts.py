"""Ctrl-C (SIGINT) on the command line: remember that it happened, so that a run stopped anywhere
(start-up, data loading, Lightning's loop, which turns KeyboardInterrupt into `sys.exit(1)`)
is cleaned up the same way and exits with status 130.

    install()          # in the entry point, before anything slow
    was_interrupted()  # in the task runner's failure path
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

_interrupted = False
# A single run's job directory as it was before Hydra created its files there: (directory, job name,
# entries that were there already or None if it did not exist, output root). Set by the entry point's
# callback before the job starts; cleared by the task runner, which cleans up after itself from then on.
_unstarted: tuple[Path, str, set[str] | None, Path | None] | None = None


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _interrupted
    _interrupted = True
    sys.unraisablehook = _drop_unraisable
    raise KeyboardInterrupt


def _drop_unraisable(unraisable: object) -> None:
    """After Ctrl-C, objects whose `__init__` the interrupt cut short (imageio's Pillow reader, say)
    fail in their `__del__`; Python would print that as a traceback ("Exception ignored in ...")
    after vizlab's one line. It is a consequence of the interrupt, not news, so it is dropped."""


def install() -> None:
    """Handle SIGINT like Python does (raise KeyboardInterrupt), and remember it (main thread only)."""
    try:
        signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread
        pass


def was_interrupted(exc: BaseException | None = None) -> bool:
    """Whether SIGINT arrived since `install()` (or `exc` is a KeyboardInterrupt)."""
    return _interrupted or isinstance(exc, KeyboardInterrupt)


def exit_interrupted(message: str = "vizlab: interrupted") -> None:
    """Print one line and exit with status 130, with Ctrl-C back to Python's default."""
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:
        pass
    print(message, file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)


def expect_run(out_dir: Path, job_name: str, output_root: Path | None) -> None:
    """Remember `out_dir` (and what is in it now) before Hydra writes its config and log there."""
    global _unstarted
    before = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else None
    _unstarted = (out_dir, job_name, before, output_root)


def run_started() -> None:
    """The task runner has started: from now on it cleans up after an interrupt itself."""
    global _unstarted
    _unstarted = None


def clean_unstarted_run() -> None:
    """After Ctrl-C between Hydra creating the job directory and the task runner starting: remove
    what Hydra wrote (its log and .hydra-pending/; the directory too if it was new)."""
    if _unstarted is None:
        return
    out_dir, job_name, before, root = _unstarted
    run_started()
    from vizlab.tasks.runner import remove_run_outputs

    remove_run_outputs(out_dir, job_name, before or set(), root)
