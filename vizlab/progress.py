"""Progress bars: tqdm on a terminal; written to a file or a pipe (a log, a SLURM output) they update
at most every `FILE_INTERVAL` seconds instead of flooding it with one line per step.

    for item in progress_bar(items, desc="pack", unit="video", disable=not progress): ...
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

FILE_INTERVAL = 5.0  # seconds between updates when the bar does not go to a terminal


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is an interactive terminal."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(iterable: Any = None, file: Any = None, **options: Any) -> tqdm:
    """A tqdm bar on `file` (default stderr); `options` as for tqdm. Off a terminal, `mininterval`
    is at least FILE_INTERVAL seconds, so a log gets a few lines a minute (and the final state)."""
    file = sys.stderr if file is None else file
    if not is_terminal(file):
        options["mininterval"] = max(float(options.get("mininterval", 0.1)), FILE_INTERVAL)
    return tqdm(iterable, file=file, **options)
