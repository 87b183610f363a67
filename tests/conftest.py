"""Shared fixtures: the embedded model, small real networks, and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
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


# --- synthetic models trained once per test session --------------------------------------------------

def _train_synthetic(task: str, cache: Path, out_dir: Path, *overrides: str) -> dict:
    """Run `task` (train / train_motion) with its default config (and `overrides`) into `cache`;
    return the results summary."""
    from hydra import compose, initialize_config_dir

    from vizlab.tasks.train import run_train

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"task={task}", "logger=none", *overrides])
    old = os.environ.get("VIZLAB_CACHE")
    os.environ["VIZLAB_CACHE"] = str(cache)
    try:
        return run_train(cfg, out_dir)["summary"]
    finally:
        if old is None:
            os.environ.pop("VIZLAB_CACHE", None)
        else:
            os.environ["VIZLAB_CACHE"] = old


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory) -> Path:
    """A session-wide model cache directory for the trained synthetic models."""
    return tmp_path_factory.mktemp("vizlab-cache")


@pytest.fixture(scope="session")
def trained_shapes_cnn(synthetic_cache, tmp_path_factory) -> dict:
    """shapes_cnn trained by the default `task=train` (about a minute); the task's results summary.
    Tests that load it set VIZLAB_CACHE to `synthetic_cache` (monkeypatch.setenv)."""
    return _train_synthetic("train", synthetic_cache, tmp_path_factory.mktemp("train-shapes"))


@pytest.fixture(scope="session")
def trained_motion_cnn(synthetic_cache, tmp_path_factory) -> dict:
    """motion_cnn trained by the default `task=train_motion` (a few minutes); the results summary."""
    return _train_synthetic("train_motion", synthetic_cache, tmp_path_factory.mktemp("train-motion"))


@pytest.fixture(scope="session")
def trained_motion_cnn16(synthetic_cache, tmp_path_factory) -> dict:
    """motion_cnn16 trained by `task=train model=motion_cnn16` (about three minutes); the results summary."""
    return _train_synthetic("train", synthetic_cache, tmp_path_factory.mktemp("train-motion16"), "model=motion_cnn16")


TRAINED_BY = {"shapes_cnn": "trained_shapes_cnn", "motion_cnn": "trained_motion_cnn",
              "motion_cnn16": "trained_motion_cnn16"}


def synthetic_model(request, monkeypatch, name: str):
    """`name` (shapes_cnn, motion_cnn or motion_cnn16) loaded from the user cache if it is there, else
    trained once per session by its fixture (`TRAINED_BY`), with VIZLAB_CACHE set to that session
    cache for the rest of the test."""
    from vizlab.errors import CheckpointError
    from vizlab.models import load_model

    try:
        return load_model(name)
    except CheckpointError:
        request.getfixturevalue(TRAINED_BY[name])
        monkeypatch.setenv("VIZLAB_CACHE", str(request.getfixturevalue("synthetic_cache")))
        return load_model(name)


@contextmanager
def module_synthetic_model(request, name: str):
    """synthetic_model for a module- or session-scoped fixture (its own MonkeyPatch, undone on exit)."""
    monkeypatch = pytest.MonkeyPatch()
    try:
        yield synthetic_model(request, monkeypatch, name)
    finally:
        monkeypatch.undo()
