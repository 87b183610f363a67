"""`shapes_cnn`: a small GAP + FC CNN for the synthetic shapes dataset, trained locally and cached.

`python run.py task=train` trains it in about a minute on CPU and writes the state dict to
`default_cache_dir() / "shapes_cnn.pt"`; `load_model("shapes_cnn")` then loads that file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import nn

from vizlab.data.synthetic_shapes import CLASS_NAMES
from vizlab.errors import CheckpointError
from vizlab.models.wrapper import ModelInfo
from vizlab.models.zoo import HALF, ModelSpec, load_state, read_checkpoint

CHECKPOINT_NAME = "shapes_cnn.pt"
INPUT_SIZE = 64
WIDTH = 16


def default_cache_dir() -> Path:
    """$VIZLAB_CACHE if set, else ~/.cache/vizlab (read at call time, not import time)."""
    env = os.environ.get("VIZLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vizlab"


def checkpoint_path() -> Path:
    """Where task=train caches the trained shapes_cnn state dict."""
    return default_cache_dir() / CHECKPOINT_NAME


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ShapesCNN(nn.Module):
    """conv blocks (3x3 conv + BN + ReLU) → global average pool → neck → fc.

    Input (N, 3, S, S) normalised with mean = std = 0.5; two stride-2 stages, so `features`
    (the GAP input, Grad-CAM's default layer) is (N, 2*width, S/4, S/4): 16 x 16 at S = 64.
    Receptive field of a `features` position: 21 px. Output: logits (N, num_classes).

    `neck` is a BatchNorm1d on the pooled features. It matters for training only: the pooled
    features barely vary across images when the object covers a few percent of the image, and
    normalising them makes training several times faster. `fold_neck()` merges it into `fc`
    and leaves an exact identity, so the deployed network is plain GAP + FC (what CAM assumes)
    with the same outputs; loading a state dict in eval mode folds automatically, so Lightning
    checkpoints of the training network load as well.
    """

    def __init__(self, num_classes: int = len(CLASS_NAMES), width: int = WIDTH) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w), _block(w, w, 2), _block(w, 2 * w), _block(2 * w, 2 * w, 2), _block(2 * w, 2 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.neck = nn.BatchNorm1d(2 * w)
        self.fc = nn.Linear(2 * w, num_classes)
        self._reset_neck()
        self.register_load_state_dict_post_hook(_fold_after_load)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.neck(self.pool(self.features(x)).flatten(1)))

    @torch.no_grad()
    def _reset_neck(self) -> None:
        """Make the eval-mode neck an exact identity."""
        bn = self.neck
        bn.weight.fill_(1)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1 - bn.eps)

    @torch.no_grad()
    def fold_neck(self) -> ShapesCNN:
        """Merge the eval-mode neck BatchNorm into fc and reset it to identity (in place); returns self."""
        bn = self.neck
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        self.fc.bias += self.fc.weight @ shift
        self.fc.weight *= scale
        self._reset_neck()
        return self


def _fold_after_load(module: ShapesCNN, _incompatible) -> None:
    if not module.training:
        module.fold_neck()


def save_state(net: nn.Module, path: str | Path) -> Path:
    """Write `net`'s state dict to `path` atomically (a plain state dict readable by read_checkpoint)."""
    from vizlab.io import write_bytes_atomic

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buf)
    return write_bytes_atomic(path, buf.getvalue())


def build_shapes_cnn(num_classes: int, pretrained: bool) -> nn.Module:
    """Zoo builder: pretrained=True loads the cached checkpoint (CheckpointError if it is missing)."""
    net = ShapesCNN(num_classes).eval()  # eval: a loaded training checkpoint folds its neck
    if pretrained:
        path = checkpoint_path()
        if not path.is_file():
            raise CheckpointError(
                f"no trained shapes_cnn checkpoint at {path}; run `python run.py task=train` "
                "(about a minute on CPU) or pass model.checkpoint=..."
            )
        load_state(net, read_checkpoint(path), str(path))
    return net


SHAPES_CNN_INFO = ModelInfo("shapes_cnn", INPUT_SIZE, HALF, HALF, "features", "fc", len(CLASS_NAMES),
                            class_names=CLASS_NAMES)
SHAPES_CNN_SPEC = ModelSpec(build_shapes_cnn, SHAPES_CNN_INFO, "custom", has_embedded_weights=True)

__all__ = ["SHAPES_CNN_SPEC", "ShapesCNN", "build_shapes_cnn", "checkpoint_path", "default_cache_dir", "save_state"]
