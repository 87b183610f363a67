"""The calls a notebook user needs: `load_model()` and `explain()`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vizlab.methods import build
from vizlab.methods.base import Explanation, Target
from vizlab.models import load_model

__all__ = ["explain", "load_model"]


def explain(model: nn.Module, x: torch.Tensor, target: Target = None, method: str = "gradcam",
            return_info: bool = False, **options: Any) -> torch.Tensor | Explanation:
    """Explain `model`'s decision on `x` with `method` (registry name) and its `options`.

    x: (N, C, H, W) or (N, C, T, H, W), normalised, on the model's device.
    target: int, per-sample ints, or None for the predicted class.
    Returns saliency (N, H, W) / (N, T, H, W) in [0, 1], or an Explanation with `return_info=True`.

    >>> import torch, vizlab
    >>> model = vizlab.load_model("efficientnet_lite0")
    >>> vizlab.explain(model, torch.zeros(2, 3, 224, 224), method="gradcam").shape
    torch.Size([2, 224, 224])
    """
    return build(method, model, **options)(x, target, return_info=return_info)
