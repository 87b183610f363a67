"""Ctrl-C (SIGINT) on the command line: remember that it happened, so that a run stopped anywhere
(start-up, data loading, Lightning's loop, which turns KeyboardInterrupt into `sys.exit(1)`)
is cleaned up the same way and exits with status 130.

    install()          # in the entry point, before anything slow
    was_interrupted()  # in the task runner's failure path
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

_interrupted = False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


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
