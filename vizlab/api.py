"""The three calls a notebook user needs: `load_model()`, `explain()` and `evaluate()`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vizlab.errors import InputError
from vizlab.methods import build
from vizlab.methods.base import Explanation, Target, check_input, frozen_parameters, logits_of, resolve_target
from vizlab.metrics.build import METRICS, build_metric
from vizlab.models import load_model

__all__ = ["evaluate", "explain", "load_model"]


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


def evaluate(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target: Target = None,
             metric: str = "deletion_insertion", masks: torch.Tensor | None = None,
             **options: Any) -> dict[str, torch.Tensor]:
    """Score saliency maps with `metric` (a `metric` config name) → per-sample scores {name: (N,)}.

    x: (N, C, H, W) or (N, C, T, H, W), normalised, on the model's device. saliency: (N, H, W) or
    (N, T, H, W). target: the explained classes (int, per-sample ints, or None: the predicted class).
    masks: bool/0-1 ground truth (N, *S) — required by the localisation metrics (pointing_game,
    mask_iou, energy_pointing), unused by deletion_insertion. options: the metric's options, as in
    conf/metric/<metric>.yaml (e.g. steps=50, preset="rise", tolerance=3).

    Returns e.g. {"deletion_auc": (N,), "insertion_auc": (N,)} or {"pointing_hit": (N,)}.

    >>> import torch, vizlab
    >>> model = vizlab.load_model("efficientnet_lite0")
    >>> x = torch.zeros(1, 3, 224, 224)
    >>> saliency = vizlab.explain(model, x, 285)
    >>> sorted(vizlab.evaluate(model, x, saliency, 285, steps=10))
    ['deletion_auc', 'insertion_auc']
    """
    scorer = build_metric(metric, model, **options)
    if not isinstance(saliency, torch.Tensor) or not saliency.is_floating_point():
        raise InputError(f"saliency must be a float tensor (N, *S), got {type(saliency).__name__}"
                         f"{'' if not isinstance(saliency, torch.Tensor) else f' of dtype {saliency.dtype}'}.")
    if not torch.isfinite(saliency).all():
        raise InputError("saliency contains NaN or Inf values.")
    if scorer.needs_masks:
        if masks is None:
            raise InputError(f"metric {metric!r} needs ground-truth object masks: pass masks=... (N, *S) at input "
                             f"resolution. Metrics that need none: "
                             f"{', '.join(n for n, c in METRICS.items() if not c.needs_masks)}.")
        return {k: v.detach() for k, v in scorer.evaluate_batch(x, saliency, None, masks).items()}
    check_input(model, x)
    if tuple(saliency.shape) != (x.shape[0], *x.shape[2:]):
        raise InputError(f"saliency {tuple(saliency.shape)} does not match the input {tuple(x.shape)}: expected "
                         f"{(x.shape[0], *x.shape[2:])}, one map per sample at input resolution.")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), frozen_parameters(model):
            t = resolve_target(target, logits_of(model(x)))
            return scorer.evaluate_batch(x, saliency.to(x.device), t, masks)
    finally:
        model.train(was_training)
