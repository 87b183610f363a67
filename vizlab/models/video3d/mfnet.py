"""MFNet-3D: Multi-Fiber Network (Chen, Kalantidis, Li, Yan & Feng, "Multi-Fiber Networks for Video
Recognition", ECCV 2018).

Module names follow cypw/PyTorch-MFNet (`network/mfnet_3d.py`, class `MFNET_3D`), so its
Kinetics-400 checkpoint (`MFNet3D_Kinetics-400_72.8.pth`) and fine-tuned UCF-101/HMDB-51 files
load directly:

    conv1.conv.weight                    (16, 3, 3, 5, 5)
    conv1.bn.weight / .bias / .running_mean / .running_var / .num_batches_tracked
    conv2.B01.conv_i1.bn.weight          (16,)          pre-activation units: bn → relu → conv
    conv2.B01.conv_i1.conv.weight        (24, 16, 1, 1, 1)
    conv2.B01.conv_i2.*, conv_m1.*, conv_m2.*, conv_w1.*   (conv_w1 only in each stage's B01)
    ... conv3.B01-B04, conv4.B01-B06, conv5.B01-B03
    tail.bn.*                            (768,)
    classifier.weight                    (K, 768)
    classifier.bias                      (K,)

16 MF units (3 + 4 + 6 + 3) with 4 pre-activation convs each plus 4 shortcut convs:
68 conv + BN pairs, conv1 and the tail BN → 1 + 5 + 68 × 6 + 5 + 2 = 421 tensors;
7,996,368 parameters for K = 400 (the paper reports 8.0 M). Verified against a transcription of
cypw's `MFNET_3D`: identical ordered keys and shapes, logits equal to within 1e-7 at 16 × 224².

cypw's files are `{'epoch', 'state_dict'}` dicts with `module.` prefixes (unwrapped by vizlab's
`read_checkpoint`) saved with PyTorch 0.4.0, i.e. without `num_batches_tracked`:
`convert_mfnet_state_dict` adds the counters.

Architecture: conv1 3×5×5 stride (1, 2, 2) → max-pool 1×3×3 stride (1, 2, 2) → conv2-conv5 stages of
MF units (widths 96/192/384/768, 16 groups ("fibres") in the 3×3 convs, the first unit of conv2
strides time by 2, those of conv3-5 space by 2) → `tail` (BN → ReLU) → global average pool →
classifier. At 16 × 224², conv5 / tail are (N, 768, 8, 7, 7); `tail` is the rectified last
feature map, the layer to use for Grad-CAM and CAM. The original asserts T = 16 and pools with
a fixed (8, 7, 7) window; here pooling is adaptive (same result at 16 × 224²).

Input normalisation: cypw trained with mean (124, 117, 104)/255 and std 1/(0.0167·255) ≈ 0.235;
vizlab uses the Class Feature Pyramids values, mean (124, 117, 104)/255 and std (0.229, 0.224, 0.225).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from vizlab.models.video3d.resnet3d import init_conv3d_bn

STAGES = (3, 4, 6, 3)  # MF units in conv2..conv5


class BnActConv3d(nn.Module):
    """Pre-activation unit: BatchNorm3d → ReLU → Conv3d (`bn`, `relu`, `conv`)."""

    def __init__(self, num_in: int, num_out: int, kernel: Sequence[int] = (1, 1, 1), pad: Sequence[int] = (0, 0, 0),
                 stride: Sequence[int] = (1, 1, 1), groups: int = 1) -> None:
        super().__init__()
        self.bn = nn.BatchNorm3d(num_in)
        self.relu = nn.ReLU()
        self.conv = nn.Conv3d(num_in, num_out, tuple(kernel), tuple(stride), tuple(pad), groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.relu(self.bn(x)))


class MFUnit(nn.Module):
    """Multi-fibre unit: a 1×1×1 multiplexer (conv_i1 → conv_i2, added to the input) routes
    information across fibres; then the grouped main path conv_m1 (3×3×3, carries the stride) →
    conv_m2 (1×3×3 grouped, or 1×1×1 in a stage's first unit); conv_w1 projects the shortcut."""

    def __init__(self, num_in: int, num_mid: int, num_out: int, groups: int = 16,
                 stride: Sequence[int] = (1, 1, 1), first_block: bool = False) -> None:
        super().__init__()
        num_ix = num_mid // 4
        self.conv_i1 = BnActConv3d(num_in, num_ix)
        self.conv_i2 = BnActConv3d(num_ix, num_in)
        self.conv_m1 = BnActConv3d(num_in, num_mid, (3, 3, 3), (1, 1, 1), stride, groups)
        if first_block:
            self.conv_m2 = BnActConv3d(num_mid, num_out)
            self.conv_w1 = BnActConv3d(num_in, num_out, stride=stride)
        else:
            self.conv_m2 = BnActConv3d(num_mid, num_out, (1, 3, 3), (0, 1, 1), groups=groups)
            self.conv_w1 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_m2(self.conv_m1(x + self.conv_i2(self.conv_i1(x))))
        return h + (x if self.conv_w1 is None else self.conv_w1(x))


class MFNet3D(nn.Module):
    """MFNet-3D; forward (N, 3, T, H, W) → logits (N, K). Trained on 16 × 224² clips."""

    def __init__(self, num_classes: int = 400, groups: int = 16, stages: Sequence[int] = STAGES) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(OrderedDict([
            ("conv", nn.Conv3d(3, 16, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False)),
            ("bn", nn.BatchNorm3d(16)),
            ("relu", nn.ReLU()),
        ]))
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        num_in, width = 16, 96
        for i, units in enumerate(stages):
            stride = (2, 1, 1) if i == 0 else (1, 2, 2)
            blocks = OrderedDict(
                (f"B{b:02d}", MFUnit(num_in if b == 1 else width, width, width, groups,
                                     stride if b == 1 else (1, 1, 1), first_block=b == 1))
                for b in range(1, units + 1)
            )
            setattr(self, f"conv{i + 2}", nn.Sequential(blocks))
            num_in, width = width, width * 2
        self.tail = nn.Sequential(OrderedDict([("bn", nn.BatchNorm3d(num_in)), ("relu", nn.ReLU())]))
        self.globalpool = nn.Sequential(OrderedDict([("avg", nn.AdaptiveAvgPool3d(1))]))
        self.classifier = nn.Linear(num_in, num_classes)
        init_conv3d_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.maxpool(self.conv1(x))
        h = self.conv5(self.conv4(self.conv3(self.conv2(h))))
        return self.classifier(self.globalpool(self.tail(h)).flatten(1))


def convert_mfnet_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the `*.num_batches_tracked` counters that PyTorch < 0.4.1 checkpoints lack (as 0).
    No key needs renaming."""
    out = dict(state)
    for key in [k for k in out if k.endswith(".running_mean")]:
        out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))
    return out
