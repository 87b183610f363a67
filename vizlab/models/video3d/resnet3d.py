"""ResNet-3D 50/101/152 and ResNeXt-3D 101 (Hara, Kataoka & Satoh, "Can Spatiotemporal 3D CNNs
Retrace the History of 2D CNNs and ImageNet?", CVPR 2018).

Module names follow kenshohara/3D-ResNets-PyTorch (`models/resnet.py` and `models/resnext.py`
of the original, pre-2019 code used by the Class Feature Pyramids seed), so the released
Kinetics-400 checkpoints (`resnet-50-kinetics.pth`, `resnet-101-kinetics.pth`,
`resnet-152-kinetics.pth`, `resnext-101-kinetics.pth`) load directly:

    conv1.weight                         (64, 3, 7, 7, 7)
    bn1.weight / .bias / .running_mean / .running_var / .num_batches_tracked
    layer1.0.conv1.weight                (64, 64, 1, 1, 1)      ResNeXt: (128, 64, 1, 1, 1)
    layer1.0.bn1.*, conv2, bn2, conv3, bn3
    layer1.0.downsample.0.weight         (256, 64, 1, 1, 1)     shortcut B: 1×1×1 conv + BN
    layer1.0.downsample.1.*
    ... layer4.2.bn3.*
    fc.weight                            (K, 2048)
    fc.bias                              (K,)

Tensor counts (with `num_batches_tracked`) and parameters for K = 400 (the fc adds 0.82 M):
    resnet3d_50   : 320 tensors,  47,018,576 parameters (46.20 M without fc)
    resnet3d_101  : 626 tensors,  86,064,720 (85.25 M)
    resnet3d_152  : 932 tensors, 118,223,440 (117.40 M)
    resnext3d_101 : 626 tensors,  48,340,816 (47.52 M)

The released files are `{'epoch', 'arch', 'state_dict', 'optimizer'}` dicts with DataParallel
`module.` prefixes (vizlab's `read_checkpoint` unwraps both) saved with PyTorch 0.3, i.e. without
`num_batches_tracked`: `convert_resnet3d_state_dict` adds the counters. The 2020 rewrite of the
repository (`r3d50_K_200ep.pth`, ...) uses the same key names for ResNet-50+ (`conv1`, `bn1`,
`layerX.Y.convZ`, `downsample.0/1`, `fc`), so those load too (pass num_classes=700 or 1039 as
needed); it was trained with different input statistics.

Architecture: conv1 7×7×7 stride (1, 2, 2) → BN → ReLU → max-pool 3×3×3 stride 2 → four stages
of bottleneck blocks (layers 2-4 stride 2 in time and space) → global average pool → fc.
At 16 × 112², layer4 is (N, 2048, 1, 4, 4). ResNeXt blocks: 1×1×1 → grouped 3×3×3 (cardinality
32) → 1×1×1, expansion 2, stage widths 128/256/512/1024. Input: 16 × 112² clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _shortcut(inplanes: int, outplanes: int, stride: int) -> nn.Module | None:
    """Shortcut type B: a projection (1×1×1 conv + BN) where the shape changes, identity elsewhere."""
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(nn.Conv3d(inplanes, outplanes, 1, stride=stride, bias=False), nn.BatchNorm3d(outplanes))


class Bottleneck3d(nn.Module):
    """1×1×1 → 3×3×3 (stride) → 1×1×1 (×4 channels), residual add, ReLU."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, groups: int = 1, width: int | None = None) -> None:
        super().__init__()
        width = width or planes
        out = planes * self.expansion
        self.conv1 = nn.Conv3d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU()  # not in-place: hooks may hold any block output
        self.downsample = _shortcut(inplanes, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNeXtBottleneck3d(Bottleneck3d):
    """ResNeXt block: width = cardinality × planes / 32 with a grouped 3×3×3 conv, expansion 2."""

    expansion = 2

    def __init__(self, inplanes: int, planes: int, stride: int = 1, cardinality: int = 32) -> None:
        super().__init__(inplanes, planes, stride, groups=cardinality, width=cardinality * (planes // 32))


class ResNet3d(nn.Module):
    """Hara et al.'s 3-D ResNet / ResNeXt; forward (N, 3, T, H, W) → logits (N, K)."""

    def __init__(self, layers: Sequence[int], num_classes: int = 400, resnext: bool = False,
                 cardinality: int = 32) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv3d(3, 64, 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        widths = (128, 256, 512, 1024) if resnext else (64, 128, 256, 512)
        block = ResNeXtBottleneck3d if resnext else Bottleneck3d
        extra = {"cardinality": cardinality} if resnext else {}
        for i, (planes, blocks) in enumerate(zip(widths, layers, strict=True)):
            stride = 1 if i == 0 else 2
            stage = []
            for b in range(blocks):
                stage.append(block(self.inplanes, planes, stride if b == 0 else 1, **extra))
                self.inplanes = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        # The original fixes the window to (ceil(T/16), ceil(H/32), ceil(W/32)); adaptive pooling
        # is the same at the training size and also accepts other sizes.
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(self.inplanes, num_classes)
        init_conv3d_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet3d(depth: int, num_classes: int = 400) -> ResNet3d:
    """ResNet-3D with bottleneck blocks and shortcut B; depth 50, 101 or 152."""
    if depth not in DEPTHS:
        raise ValueError(f"ResNet-3D depth must be one of {sorted(DEPTHS)}, got {depth}.")
    return ResNet3d(DEPTHS[depth], num_classes)


def resnext3d(depth: int = 101, num_classes: int = 400, cardinality: int = 32) -> ResNet3d:
    """ResNeXt-3D (shortcut B, cardinality 32 by default); depth 50, 101 or 152."""
    if depth not in DEPTHS:
        raise ValueError(f"ResNeXt-3D depth must be one of {sorted(DEPTHS)}, got {depth}.")
    return ResNet3d(DEPTHS[depth], num_classes, resnext=True, cardinality=cardinality)


def convert_resnet3d_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the `*.num_batches_tracked` counters that PyTorch < 0.4.1 checkpoints lack (as 0).

    Prefixes (`module.`) and the `{'state_dict': ..., 'arch': ...}` wrapper are already removed by
    `vizlab.models.zoo.read_checkpoint`; no key needs renaming.
    """
    out = dict(state)
    for key in [k for k in out if k.endswith(".running_mean")]:
        out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))
    return out


def init_conv3d_bn(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) for every Conv3d, ones/zeros for every BatchNorm3d."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
