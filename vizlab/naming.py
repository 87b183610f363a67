"""Names and sort orders shared by data sources and reports."""

from __future__ import annotations

import re
from typing import Any


def natural_key(text: str) -> list[Any]:
    """Sort key treating digit runs as numbers, case-insensitive: frame_2 < frame_10, '2_x' < '10_x'."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", text)]


def safe_name(text: str) -> str:
    """A file-name-safe version of a sample name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "sample"
