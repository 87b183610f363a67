"""The method contract: `method(x, target) -> saliency` with shared input checks and normalisation.

x: (N, C, H, W) or (N, C, T, H, W) normalised input on the model's device.
target: int, sequence of ints, (N,) tensor, or None (the predicted class).
Returns saliency (N, H, W) or (N, T, H, W) in [0, 1] on x's device; with `return_info=True`
an `Explanation` that also holds the raw signed map, targets and logits.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from vizlab.errors import InputError
from vizlab.layers import first_module_of_type

Target = int | Sequence[int] | torch.Tensor | None


@dataclass
class Explanation:
    """What a method returns with `return_info=True`.

    saliency: (N, *S) in [0, 1] at input resolution, S = (H, W) or (T, H, W).
    raw: signed, unnormalised attribution: input-shaped (N, C, *S) for gradient methods,
         layer-resolution (N, *S') for CAM methods.
    target: (N,) long class indices explained. logits: (N, K) model output on the clean input.
    extras: method-specific extras (e.g. IG's completeness delta), tensors of leading dim N.
    """

    saliency: torch.Tensor
    raw: torch.Tensor
    target: torch.Tensor
    logits: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


class AttributionMethod:
    """Base class. Subclasses implement `explain(x, target) -> Explanation`.

    Subclasses set `name`; `__call__` validates inputs, runs the method with the model's
    parameters frozen and returns the saliency (or the Explanation with `return_info=True`).
    """

    name: str = "base"
    input_dims: int | None = None  # 4: images (N, C, H, W) only · 5: clips (N, C, T, H, W) only · None: both
    any_model: bool = True         # False: needs a particular network family (e.g. hrcam: an HR-CAM model)
    family: str = "other"          # cam · gradient · other (e.g. `vizlab methods --sweep image cam,gradient`)
    summary: str = ""              # one line for the README's method table (default: the docstring's first line)
    defaults_note: str = ""        # the table's "defaults" cell (default: the options with their defaults)

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    # --- public API -------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, target: Target = None, return_info: bool = False):
        check_input(self.model, x)
        check_target(target)
        was_training = self.model.training
        self.model.eval()
        try:
            with frozen_parameters(self.model):
                info = self.explain(x, target)
        except RuntimeError as exc:
            too_small = input_too_small(exc, x)
            if too_small is None:
                raise
            raise too_small from exc
        finally:
            self.model.train(was_training)
        return info if return_info else info.saliency

    def explain(self, x: torch.Tensor, target: Target) -> Explanation:  # pragma: no cover
        raise NotImplementedError

    # --- what the explain loop records besides the map (none by default) ----------------------
    def sample_details(self, info: Explanation, index: int) -> dict[str, Any]:
        """Method-specific numbers of sample `index` (JSON values: numbers or lists of numbers),
        kept in results.json under "details" and as columns of the W&B sample table."""
        return {}

    def sample_figures(self, info: Explanation, index: int, image: torch.Tensor) -> dict[str, Any]:
        """Method-specific pictures of sample `index`: name → uint8 RGB array (H, W, 3). The explain
        loop saves them as heatmaps/<index>_<name>_<figure>.png and logs them to W&B as figures/<figure>.
        image: the sample in [0, 1], (C, H, W) or (C, T, H, W)."""
        return {}

    def curves(self, info: Explanation) -> dict[str, torch.Tensor]:
        """Per-iteration curves of an optimising method: name → (N, iterations), NaN where a sample
        had stopped. The explain loop averages them over all samples into results.json
        ("curves") and W&B (curves/<name> against curves/iteration)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --- shared helpers ---------------------------------------------------------------------------
@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Temporarily set requires_grad=False on every parameter (no weight gradients are needed)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


MIN_SIZE_FRACTION = 8  # a zoo model refuses inputs smaller than input_size / 8 per side


def check_input(model: nn.Module, x: torch.Tensor) -> None:
    """Raise InputError for non-tensor, wrong rank, empty input, too small for a zoo model, wrong
    channel count, device or dtype (unless autocast is on), or NaN/Inf."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"Input must be a torch.Tensor, got {type(x).__name__}.")
    if not x.is_floating_point():
        raise InputError(f"Input must be a float tensor (normalised), got dtype {x.dtype}. "
                         "Convert with x.float() and normalise it for the model.")
    if x.dim() not in (4, 5):
        raise InputError(
            f"Input must be (N, C, H, W) for images or (N, C, T, H, W) for clips, got shape "
            f"{tuple(x.shape)}. Add a batch dimension with x.unsqueeze(0) for a single sample."
        )
    if x.numel() == 0:
        raise InputError(f"Input is empty (shape {tuple(x.shape)}); give at least one sample with non-zero size.")
    first = first_module_of_type(model, (nn.Conv2d, nn.Conv3d))
    info = getattr(model, "info", None)
    if first is not None:
        name, conv = first
        want = (5 if info.is_video else 4) if info is not None else (5 if isinstance(conv, nn.Conv3d) else 4)
        if x.dim() != want:
            kind = "a clip (N, C, T, H, W)" if want == 5 else "an image (N, C, H, W)"
            raise InputError(f"This model expects {kind} input (first conv: {name}, "
                             f"{type(conv).__name__}); got shape {tuple(x.shape)}.")
        if x.shape[1] != conv.in_channels:
            raise InputError(f"Input has {x.shape[1]} channels but the model's first conv ({name}) "
                             f"expects {conv.in_channels}. Shape given: {tuple(x.shape)}.")
        if conv.weight.device != x.device:
            raise InputError(f"Input is on {x.device} but the model is on {conv.weight.device}; "
                             "move one with .to(device).")
        if conv.weight.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
            raise InputError(f"Input is {x.dtype} but the model's weights are {conv.weight.dtype}; "
                             f"convert the input with x.to({conv.weight.dtype}) (or the model with model.to(dtype)).")
    size = getattr(info, "input_size", None)
    if isinstance(size, int) and min(x.shape[-2:]) < max(1, size // MIN_SIZE_FRACTION):
        raise InputError(f"Input of spatial size {tuple(x.shape[-2:])} is too small for {info.name} (input size "
                         f"{size}×{size}; at least {size // MIN_SIZE_FRACTION} px per side): its maps would be empty "
                         "or meaningless. Resize the input to the model's input size.")
    if not torch.isfinite(x).all():
        raise InputError("Input contains NaN or Inf values; check the image/clip decoding and normalisation.")


TARGET_HELP = "an int class index, one per sample (a list or an integer tensor), or None for the predicted class"


def check_target(target: Target) -> None:
    """Raise InputError unless `target` is None, an int, a sequence of ints or an integer tensor/array
    (a float such as 2.7 is refused rather than truncated; so are strings and bools)."""
    if target is None:
        return
    if isinstance(target, (torch.Tensor, np.ndarray)):
        integer = (not (target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool)
                   if isinstance(target, torch.Tensor) else target.dtype.kind in "iu")
        if not integer:
            raise InputError(f"target must be {TARGET_HELP}; got a {target.dtype} tensor "
                             f"(convert class indices with .long()).")
        return
    items = target if isinstance(target, Sequence) and not isinstance(target, (str, bytes)) else [target]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise InputError(f"target must be {TARGET_HELP}; got {item!r} ({type(item).__name__}).")


def input_too_small(exc: RuntimeError, x: torch.Tensor) -> InputError | None:
    """The InputError for torch's "kernel larger than input" / "output size too small" errors, else None."""
    text = str(exc)
    if "Kernel size can't be greater than actual input size" not in text and "Output size is too small" not in text:
        return None
    return InputError(f"Input of spatial size {tuple(x.shape[2:])} is too small for this network (a convolution "
                      "or pooling layer has nothing left to work on); resize the input to the model's input size.")


def resolve_target(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """(N,) long tensor of class indices; None → argmax of `logits`. Checks the range."""
    n, k = logits.shape[0], logits.shape[1]
    if target is None:
        return logits.argmax(dim=1)
    check_target(target)
    t = torch.as_tensor(target, device=logits.device).long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise InputError(f"Got {t.numel()} targets for a batch of {n}; give one int or one per sample.")
    bad = (t < 0) | (t >= k)
    if bad.any():
        raise InputError(f"Class index {int(t[bad][0])} out of range: the model has {k} classes "
                         f"(valid 0..{k - 1}); use target=None for the predicted class.")
    return t.clone()


def per_sample_targets(target: Target, x: torch.Tensor) -> torch.Tensor | None:
    """None, or an (N,) long tensor on x's device (one int is broadcast). Checks the count only."""
    if target is None:
        return None
    check_target(target)
    t = torch.as_tensor(target, device=x.device).long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(x.shape[0])
    if t.numel() != x.shape[0]:
        raise InputError(f"Got {t.numel()} targets for a batch of {x.shape[0]}; give one int or one per sample.")
    return t


def logits_of(output: torch.Tensor | tuple | Any) -> torch.Tensor:
    """Model output → (N, K) logits (handles tuple outputs and torchvision's InceptionOutputs)."""
    if isinstance(output, torch.Tensor):
        out = output
    elif hasattr(output, "logits"):
        out = output.logits
    elif isinstance(output, (tuple, list)):
        out = output[0]
    else:
        raise InputError(f"Model returned {type(output).__name__}; expected a logits tensor.")
    if out.dim() != 2:
        raise InputError(f"Model output must be (N, num_classes) logits, got shape {tuple(out.shape)}.")
    return out


def target_score(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of each sample's target logit (its gradient is per-sample)."""
    return logits.gather(1, target[:, None]).sum()


def upsample(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(N, *S') → (N, *size) by bilinear (2-D) or trilinear (3-D) interpolation."""
    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return torch.nn.functional.interpolate(maps[:, None], size=tuple(size), mode=mode, align_corners=False)[:, 0]


def minmax(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-sample min-max normalisation of (N, ...) to [0, 1]; a constant map becomes 0."""
    flat = maps.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(maps)


def percentile_scale(maps: torch.Tensor, q: float = 99.9) -> torch.Tensor:
    """Per-sample: divide non-negative maps by their q-th percentile and clip to [0, 1].

    The display rule of the video-perturbation seed (lo = 0, hi = P_q), without its sign bug.
    """
    flat = maps.flatten(1)
    k = max(1, min(flat.shape[1], int(round(q / 100 * (flat.shape[1] - 1))) + 1))
    hi = flat.kthvalue(k, dim=1, keepdim=True).values
    hi = torch.where(hi > 0, hi, flat.max(1, keepdim=True).values)
    return (flat / hi.clamp_min(1e-12)).clamp(0, 1).view_as(maps)
