"""`ZooModel`: a classifier plus everything a method or a data loader needs to know about it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    """Static facts about a zoo model.

    input_size: spatial side (H = W) the model expects, e.g. 224.
    frames: clip length T for video models, None for image models.
    mean, std: per-channel normalisation applied to inputs scaled to [0, 1].
    default_layer: dotted name of the layer Grad-CAM uses by default (last conv block).
    classifier_layer: dotted name of the final nn.Linear (used by CAM).
    """

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_layer: str
    classifier_layer: str
    num_classes: int
    frames: int | None = None
    class_names: Sequence[str] = field(default_factory=tuple, repr=False)

    @property
    def is_video(self) -> bool:
        return self.frames is not None


class ZooModel(nn.Module):
    """Wraps a network: forward(x) = net(x) on normalised input; layer names are relative to `net`.

    Input: (N, 3, H, W) for image models, (N, 3, T, H, W) for video models. Output: logits (N, K).
    """

    is_zoo_model = True

    def __init__(self, net: nn.Module, info: ModelInfo) -> None:
        super().__init__()
        self.net = net
        self.info = info
        self.register_buffer("mean", torch.tensor(info.mean), persistent=False)
        self.register_buffer("std", torch.tensor(info.std), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _channel_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (1, -1) + (1,) * (x.dim() - 2)

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """Map inputs in [0, 1] to the model's normalised space."""
        shape = self._channel_shape(x01)
        return (x01 - self.mean.view(shape)) / self.std.view(shape)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map normalised inputs back to [0, 1] (clamped)."""
        shape = self._channel_shape(x)
        return (x * self.std.view(shape) + self.mean.view(shape)).clamp(0, 1)

    def class_name(self, index: int) -> str:
        names = self.info.class_names
        return names[index] if 0 <= index < len(names) else str(index)

    def extra_repr(self) -> str:
        return f"name={self.info.name!r}, input_size={self.info.input_size}, frames={self.info.frames}"
