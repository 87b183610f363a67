"""Shared fixtures: the embedded model, small real networks, and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def effnet():
    import vizlab

    return vizlab.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def sample_batch(effnet):
    """(2, 3, 224, 224) normalised chelsea + coffee."""
    from vizlab.data import SampleImages

    ds = SampleImages(224, ["chelsea", "coffee"])
    images = torch.stack([ds[i]["image"] for i in range(2)])
    return effnet.normalize(images)


class TinyCNN(nn.Module):
    """conv → ReLU → conv → ReLU → GAP → fc: a GAP + FC net for 2-D or 3-D input."""

    def __init__(self, dims: int = 2, classes: int = 5, width: int = 8) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.features = nn.Sequential(conv(3, width, 3, padding=1), nn.ReLU(inplace=True),
                                      conv(width, width, 3, padding=1, stride=2), nn.ReLU(inplace=True))
        self.pool = pool
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture
def tiny2d():
    torch.manual_seed(0)
    return TinyCNN(2).eval()


@pytest.fixture
def tiny3d():
    torch.manual_seed(0)
    return TinyCNN(3).eval()


def run_cli(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a command line (list of args) with the project's python on PATH; capture output."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0")
    env["PATH"] = f"{Path(PYTHON).parent}:{env['PATH']}"
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
