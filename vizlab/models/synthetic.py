"""Small GAP + FC CNNs for vizlab's synthetic data sets, trained locally and cached.

- `shapes_cnn` (2-D) for `synthetic_shapes`: `python run.py task=train` trains it in about a
  minute on CPU.
- `motion_cnn` (3-D) for `synthetic_motion`: `python run.py task=train_motion` trains it in about
  two minutes on 2 idle CPU cores.
- `motion_cnn16`: the same network trained on 16-frame clips (`python run.py task=train
  model=motion_cnn16`, about three minutes), for methods and metrics at the video zoo's clip length.
  On 16-frame clips `motion_cnn` is 0.88 accurate and its perturbation masks beat the object mask's
  objective 8-fold, so its 16-frame evidence is not the object alone; measure 16-frame
  localisation on `motion_cnn16`.

Each writes its state dict to `default_cache_dir() / "<name>.pt"`, where `load_model(name)` finds it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from vizlab.data.synthetic_motion import CLASS_NAMES as MOTION_CLASSES
from vizlab.data.synthetic_shapes import CLASS_NAMES
from vizlab.errors import CheckpointError
from vizlab.models.wrapper import ModelInfo
from vizlab.models.zoo import HALF, ModelSpec, load_state, read_checkpoint

INPUT_SIZE = 64
MOTION_SIZE, MOTION_FRAMES, LONG_MOTION_FRAMES = 48, 8, 16
WIDTH = 16
TRAIN_COMMANDS = {"shapes_cnn": ("python run.py task=train", "about a minute on CPU"),
                  "motion_cnn": ("python run.py task=train_motion", "about two minutes on 2 CPU cores"),
                  "motion_cnn16": ("python run.py task=train model=motion_cnn16", "about three minutes on 2 CPU cores")}


def default_cache_dir() -> Path:
    """$VIZLAB_CACHE if set, else ~/.cache/vizlab (read at call time, not import time)."""
    env = os.environ.get("VIZLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vizlab"


def checkpoint_path(name: str = "shapes_cnn") -> Path:
    """Where the training task caches the trained state dict of synthetic model `name`."""
    return default_cache_dir() / f"{name}.pt"


def _block(cin: int, cout: int, stride: int | tuple[int, ...] = 1, dims: int = 2) -> nn.Sequential:
    conv, bn = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
    return nn.Sequential(conv(cin, cout, 3, stride, 1, bias=False), bn(cout), nn.ReLU(inplace=True))


class GapCNN(nn.Module):
    """`features` (conv blocks: 3x3(x3) conv + BN + ReLU) → global average pool → neck → fc.

    Subclasses build `features`, ending in `channels` maps (Grad-CAM's default layer).
    Output: logits (N, num_classes).

    `neck` is a BatchNorm1d on the pooled features. It matters for training only: the pooled
    features barely vary across inputs when the object covers a few percent of the image, and
    normalising them makes training several times faster. `fold_neck()` merges it into `fc`
    and leaves an exact identity, so the deployed network is plain GAP + FC (what CAM assumes)
    with the same outputs; loading a state dict in eval mode folds automatically, so Lightning
    checkpoints of the training network load as well.
    """

    def __init__(self, features: nn.Sequential, channels: int, num_classes: int, dims: int = 2) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.neck = nn.BatchNorm1d(channels)
        self.fc = nn.Linear(channels, num_classes)
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
    def fold_neck(self) -> GapCNN:
        """Merge the eval-mode neck BatchNorm into fc and reset it to identity (in place); returns self."""
        bn = self.neck
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        self.fc.bias += self.fc.weight @ shift
        self.fc.weight *= scale
        self._reset_neck()
        return self


class ShapesCNN(GapCNN):
    """2-D GapCNN for synthetic shapes. Input (N, 3, S, S) normalised with mean = std = 0.5; two
    stride-2 stages, so `features` is (N, 2*width, S/4, S/4): 16 x 16 at S = 64. Receptive field
    of a `features` position: 21 px.
    """

    def __init__(self, num_classes: int = len(CLASS_NAMES), width: int = WIDTH) -> None:
        w = width
        features = nn.Sequential(
            _block(3, w), _block(w, w, 2), _block(w, 2 * w), _block(2 * w, 2 * w, 2), _block(2 * w, 2 * w),
        )
        super().__init__(features, 2 * w, num_classes)


class MotionCNN(GapCNN):
    """3-D GapCNN for synthetic motion. Input (N, 3, T, S, S) normalised with mean = std = 0.5;
    3x3x3 convolutions, two (1,2,2) strides, so `features` is (N, 2*width, T, S/4, S/4): 8 x 12 x 12
    for the default 8 x 48 x 48 clips. No temporal stride: with T/2 feature frames Grad-CAM's peak
    lands between two frames' object positions (spatio-temporal pointing 0.59 vs 0.99 on the
    union of the frames' masks, measured).
    """

    def __init__(self, num_classes: int = len(MOTION_CLASSES), width: int = WIDTH) -> None:
        w = width
        features = nn.Sequential(
            _block(3, w, dims=3), _block(w, w, (1, 2, 2), 3), _block(w, w, dims=3),
            _block(w, 2 * w, (1, 2, 2), 3), _block(2 * w, 2 * w, dims=3),
        )
        super().__init__(features, 2 * w, num_classes, dims=3)


def _fold_after_load(module: GapCNN, _incompatible) -> None:
    if not module.training:
        module.fold_neck()


def save_state(net: nn.Module, path: str | Path) -> Path:
    """Write `net`'s state dict to `path` atomically (a plain state dict readable by read_checkpoint)."""
    from vizlab.io import write_bytes_atomic

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buf)
    return write_bytes_atomic(path, buf.getvalue())


def load_cached(net: GapCNN, name: str) -> GapCNN:
    """Load the cached checkpoint of `name` into `net` (eval mode); CheckpointError if there is none."""
    path = checkpoint_path(name)
    if not path.is_file():
        raise CheckpointError(
            f"no trained {name} checkpoint at {path}; run `{TRAIN_COMMANDS[name][0]}` "
            f"({TRAIN_COMMANDS[name][1]}) or pass model.checkpoint=..."
        )
    load_state(net.eval(), read_checkpoint(path), str(path))
    return net


def cached_builder(network: Callable[[int], GapCNN], name: str) -> Callable[[int, bool], nn.Module]:
    """A zoo builder for `network` (called with num_classes): pretrained=True loads the cached
    checkpoint of `name` (CheckpointError if it is missing); the network is in eval mode, so a
    loaded training checkpoint folds its neck."""

    def build(num_classes: int, pretrained: bool) -> nn.Module:
        net = network(num_classes).eval()
        return load_cached(net, name) if pretrained else net

    build.__name__ = build.__qualname__ = f"build_{name}"
    return build


build_shapes_cnn = cached_builder(ShapesCNN, "shapes_cnn")
build_motion_cnn = cached_builder(MotionCNN, "motion_cnn")
build_motion_cnn16 = cached_builder(MotionCNN, "motion_cnn16")  # the same network, trained on 16-frame clips


SHAPES_CNN_INFO = ModelInfo("shapes_cnn", INPUT_SIZE, HALF, HALF, "features", "fc", len(CLASS_NAMES),
                            class_names=CLASS_NAMES)
SHAPES_CNN_SPEC = ModelSpec(build_shapes_cnn, SHAPES_CNN_INFO, "custom", has_embedded_weights=True)
MOTION_CNN_INFO = ModelInfo("motion_cnn", MOTION_SIZE, HALF, HALF, "features", "fc", len(MOTION_CLASSES),
                            frames=MOTION_FRAMES, class_names=MOTION_CLASSES)
MOTION_CNN_SPEC = ModelSpec(build_motion_cnn, MOTION_CNN_INFO, "custom", has_embedded_weights=True)
MOTION_CNN16_INFO = ModelInfo("motion_cnn16", MOTION_SIZE, HALF, HALF, "features", "fc", len(MOTION_CLASSES),
                              frames=LONG_MOTION_FRAMES, class_names=MOTION_CLASSES)
MOTION_CNN16_SPEC = ModelSpec(build_motion_cnn16, MOTION_CNN16_INFO, "custom", has_embedded_weights=True)

__all__ = ["MOTION_CNN16_SPEC", "MOTION_CNN_SPEC", "SHAPES_CNN_SPEC", "GapCNN", "MotionCNN", "ShapesCNN",
           "build_motion_cnn", "build_motion_cnn16", "build_shapes_cnn", "cached_builder", "checkpoint_path",
           "default_cache_dir", "load_cached", "save_state"]
