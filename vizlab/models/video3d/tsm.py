"""TSM: Temporal Shift Module on a ResNet-50 (Lin, Gan & Han, "TSM: Temporal Shift Module for
Efficient Video Understanding", ICCV 2019), 8 segments, shift_div 8, 'blockres' placement.

Module names follow mit-han-lab/temporal-shift-module (`ops/models.py` class `TSN`,
`ops/temporal_shift.py`), so its Kinetics-400 checkpoints
(`TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth`, ...) load directly:

    base_model.conv1.weight                      (64, 3, 7, 7)    a torchvision resnet50
    base_model.bn1.weight / .bias / .running_mean / .running_var / .num_batches_tracked
    base_model.layer1.0.conv1.net.weight         (64, 64, 1, 1)   conv1 of each block is wrapped
    base_model.layer1.0.bn1.*, conv2, bn2, conv3, bn3, downsample.0/1
    ... base_model.layer4.2.bn3.*
    new_fc.weight                                (K, 2048)
    new_fc.bias                                  (K,)

320 tensors, 24,327,632 parameters for K = 400. `base_model.fc` is the dropout (p = 0.8 in TSN's
default) that precedes `new_fc`; TSN trained with dropout 0 instead keeps the classifier in
`base_model.fc.{weight,bias}`: `convert_tsm_state_dict` renames it to `new_fc`. The released
files are `{'epoch', 'arch', 'state_dict', 'best_prec1'}` dicts with `module.` prefixes,
which vizlab's `read_checkpoint` unwraps. (The EPIC-Kitchens TSM of the video-perturbation seed,
from epic-kitchens/action-models, has verb/noun heads and does not fit this single-head layout.)

vizlab's uniform clip API: forward takes (N, 3, T, H, W) with T = num_segments (one frame per
segment), runs the 2-D trunk on the N·T frames, and averages the per-segment logits (TSN's "avg"
consensus). Input: ImageNet mean/std, 224², 8 frames.

The trunk's maps are (N·T, C, h, w); `clip_features` is a parameter-free module that regroups
base_model.layer4's output into a clip (N, 2048, T, h, w) and is on the path to the logits, so
Grad-CAM/CAM read it as a 5-D feature map (use it rather than `base_model.layer4`).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from vizlab.errors import InputError


class TemporalShift(nn.Module):
    """Shift 1/n_div of the channels one frame back in time and another 1/n_div one frame forward
    (zero-filled at the clip ends), then apply the wrapped layer `net`.

    Input (N·T, C, H, W) with the T = n_segment frames of each clip contiguous. After the shift,
    frame t holds channels [0, C/n_div) of frame t+1 and channels [C/n_div, 2C/n_div) of frame t-1.
    """

    def __init__(self, net: nn.Module, n_segment: int = 8, n_div: int = 8) -> None:
        super().__init__()
        self.net = net
        self.n_segment = n_segment
        self.fold_div = n_div

    @staticmethod
    def shift(x: torch.Tensor, n_segment: int, fold_div: int = 8) -> torch.Tensor:
        nt, c, h, w = x.shape
        clip = x.view(nt // n_segment, n_segment, c, h, w)
        fold = c // fold_div
        out = torch.zeros_like(clip)
        out[:, :-1, :fold] = clip[:, 1:, :fold]  # from the next frame
        out[:, 1:, fold:2 * fold] = clip[:, :-1, fold:2 * fold]  # from the previous frame
        out[:, :, 2 * fold:] = clip[:, :, 2 * fold:]
        return out.view(nt, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.shift(x, self.n_segment, self.fold_div))

    def extra_repr(self) -> str:
        return f"n_segment={self.n_segment}, fold_div={self.fold_div}"


def add_temporal_shift(net: torchvision.models.ResNet, n_segment: int, n_div: int = 8, place: str = "blockres") -> None:
    """Insert temporal shifts into a torchvision ResNet in place.

    'blockres': wrap conv1 of the residual branch of every block (every second block when a stage has
    23+ blocks, as TSM does for ResNet-101); 'block': wrap whole blocks.
    """
    if place not in ("blockres", "block"):
        raise ValueError(f"shift_place must be 'blockres' or 'block', got {place!r}.")
    every = 2 if len(net.layer3) >= 23 else 1
    for name in ("layer1", "layer2", "layer3", "layer4"):
        stage = getattr(net, name)
        for i, block in enumerate(stage):
            if place == "block":
                stage[i] = TemporalShift(block, n_segment, n_div)
            elif i % every == 0:
                block.conv1 = TemporalShift(block.conv1, n_segment, n_div)


class ClipFeatures(nn.Module):
    """(N·T, C, h, w) → (N, C, T, h, w): the per-frame maps of each clip stacked along time."""

    def __init__(self, n_segment: int) -> None:
        super().__init__()
        self.n_segment = n_segment

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        return x.view(nt // self.n_segment, self.n_segment, c, h, w).transpose(1, 2)

    def extra_repr(self) -> str:
        return f"n_segment={self.n_segment}"


class TSM(nn.Module):
    """TSN + temporal shift on a torchvision ResNet; forward (N, 3, T, H, W) → logits (N, K)."""

    def __init__(self, num_classes: int = 400, num_segments: int = 8, shift_div: int = 8,
                 shift_place: str = "blockres", dropout: float = 0.8, arch: str = "resnet50") -> None:
        super().__init__()
        self.num_segments = num_segments
        base = getattr(torchvision.models, arch)(weights=None)
        add_temporal_shift(base, num_segments, shift_div, shift_place)
        feature_dim = base.fc.in_features
        base.fc = nn.Dropout(p=dropout)
        base.avgpool = nn.AdaptiveAvgPool2d(1)
        self.base_model = base
        self.clip_features = ClipFeatures(num_segments)
        self.new_fc = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.new_fc.weight, 0, 0.001)
        nn.init.zeros_(self.new_fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[2] != self.num_segments:
            raise InputError(f"TSM expects clips (N, C, T, H, W) with T = num_segments = {self.num_segments}; "
                             f"got shape {tuple(x.shape)}. Sample {self.num_segments} frames per clip.")
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        b = self.base_model
        y = b.maxpool(b.relu(b.bn1(b.conv1(frames))))
        y = b.layer4(b.layer3(b.layer2(b.layer1(y))))
        clip = self.clip_features(y)  # (N, C, T, h, w)
        per_segment = self.new_fc(b.fc(clip.mean(dim=(3, 4)).transpose(1, 2)))  # (N, T, K)
        return per_segment.mean(1)  # average consensus


def convert_tsm_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the classifier of a TSN trained with dropout 0 (`base_model.fc.*`) to `new_fc.*`, and
    add `*.num_batches_tracked` counters (as 0) where a checkpoint lacks them."""
    out = dict(state)
    if "new_fc.weight" not in out:
        for suffix in ("weight", "bias"):
            if f"base_model.fc.{suffix}" in out:
                out[f"new_fc.{suffix}"] = out.pop(f"base_model.fc.{suffix}")
    for key in [k for k in out if k.endswith(".running_mean")]:
        out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))
    return out
