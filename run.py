"""Hydra entry point: `python run.py task=explain model=resnet50 method=gradcam` (also `-m` sweeps).

Bad config or input: one `vizlab: error:` line, exit status 2 (`vizlab.entry`); Ctrl-C: exit 130.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    try:
        from vizlab.entry import hydra_main
    except KeyboardInterrupt:
        print("vizlab: interrupted", file=sys.stderr)
        sys.exit(130)
    hydra_main(Path(__file__).resolve().parent / "conf")
