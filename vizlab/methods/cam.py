"""CAM and Grad-CAM for 2-D and 3-D CNNs (one code path; the layer output may be 4-D or 5-D)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vizlab.errors import ConfigError, InputError
from vizlab.layers import LayerSpec, last_module_of_type, last_spatial_layer, resolve_layer
from vizlab.methods.base import (
    AttributionMethod,
    Explanation,
    Target,
    logits_of,
    minmax,
    resolve_target,
    target_score,
    upsample,
)
from vizlab.methods.hooks import capture_layer
from vizlab.methods.registry import register

Temporal = Literal["pooled", "per_frame"]


class _LayerMethod(AttributionMethod):
    """Shared set-up of methods that read one layer's feature map.

    layer=None: the zoo model's default layer; for a plain nn.Module, the last module whose output
    is a spatial feature map (the input of global pooling), found by one probing forward pass on
    the first call.
    """

    def __init__(self, model: nn.Module, layer: LayerSpec | None = None) -> None:
        super().__init__(model)
        info = getattr(model, "info", None)
        if layer is None and info is not None and getattr(info, "default_layer", None):
            layer = info.default_layer
        self.layer_name = layer if isinstance(layer, str) else ("module" if layer is not None else None)
        self.layer = resolve_layer(model, layer) if layer is not None else None

    def target_layer(self, x: torch.Tensor) -> nn.Module:
        """The layer to read; resolves the automatic default on first use."""
        if self.layer is None:
            self.layer_name = last_spatial_layer(self.model, x[:1])
            self.layer = resolve_layer(self.model, self.layer_name)
        return self.layer

    def finish(self, raw: torch.Tensor, x: torch.Tensor, t: torch.Tensor, logits: torch.Tensor,
               **extras) -> Explanation:
        """raw (N, *S') signed map → Explanation with ReLU, upsampling and per-sample min-max.
        A 1×1 (×1) layer map cannot localise anything (the map would be all zeros): InputError."""
        if raw.dim() > 1 and all(side == 1 for side in raw.shape[1:]):
            size = getattr(getattr(self.model, "info", None), "input_size", None)
            hint = f"the model's input size is {size}×{size}" if size else "use larger inputs"
            raise InputError(f"Input of spatial size {tuple(x.shape[2:])} is too small for layer {self.layer_name!r}: "
                             f"its feature map is {'×'.join(map(str, raw.shape[1:]))}, so the map would be empty; "
                             f"{hint} (or pick an earlier layer with method.layer=...).")
        saliency = minmax(upsample(raw.clamp_min(0), x.shape[2:]))
        return Explanation(saliency, raw.detach(), t, logits.detach(), extras)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer={self.layer_name!r})"


@register
class GradCAM(_LayerMethod):
    """Grad-CAM (Selvaraju et al. 2017): ReLU(Σ_c w_c · A_c), w_c = mean of ∂y_t/∂A_c.

    For video layers (N, C, T', H', W'), `temporal` chooses the weights:
      - "pooled" (default): one weight per channel, gradients averaged over T', H', W' — the
        paper's global-average rule applied to every feature position, as Captum and
        pytorch-grad-cam do for 3-D layers; weights see the whole clip, so they are less noisy.
      - "per_frame": one weight per channel and frame (spatial mean only), as in the video
        perturbation paper (Li et al. 2021), so a channel can matter in some frames only.
    Output: (N, H, W) or (N, T, H, W) in [0, 1]; raw = the signed map at layer resolution.
    The backward pass stops at the layer (no input or weight gradients are computed).
    """

    name = "gradcam"

    def __init__(self, model: nn.Module, layer: LayerSpec | None = None, temporal: Temporal = "pooled") -> None:
        super().__init__(model, layer)
        if temporal not in ("pooled", "per_frame"):
            raise ConfigError(f"temporal must be 'pooled' or 'per_frame', got {temporal!r}.")
        self.temporal = temporal

    def explain(self, x: torch.Tensor, target: Target) -> Explanation:
        with torch.enable_grad():
            with capture_layer(self.target_layer(x), start_graph=True) as cap:
                logits = logits_of(self.model(x))
            t = resolve_target(target, logits)
            acts = cap.get(self.layer_name)
            score = target_score(logits, t)
            if not score.requires_grad:
                raise InputError(f"Layer {self.layer_name!r} does not influence the logits; "
                                 "choose a layer on the path to the output.")
            (grads,) = torch.autograd.grad(score, acts)
        dims = tuple(range(2, grads.dim()))
        if self.temporal == "per_frame" and grads.dim() == 5:
            dims = (3, 4)
        weights = grads.mean(dim=dims, keepdim=True)
        raw = (weights * acts.detach()).sum(1)
        return self.finish(raw, x, t, logits)


@register
class CAM(_LayerMethod):
    """Class Activation Mapping (Zhou et al. 2016) for GAP + FC networks: Σ_c W[t, c] · A_c.

    `layer` is the last feature map (the GAP input); `classifier` the final nn.Linear
    (default: the zoo's classifier or the last Linear). One forward pass, no gradients.
    """

    name = "cam"

    def __init__(self, model: nn.Module, layer: LayerSpec | None = None, classifier: LayerSpec | None = None) -> None:
        super().__init__(model, layer)
        if classifier is None:
            info = getattr(model, "info", None)
            if info is not None:
                classifier = info.classifier_layer
            else:
                found = last_module_of_type(model, (nn.Linear,))
                if found is None:
                    raise ConfigError("CAM needs a final nn.Linear classifier; none found. Use gradcam.")
                classifier = found[0]
        self.classifier = resolve_layer(model, classifier)
        if not isinstance(self.classifier, nn.Linear):
            raise ConfigError(f"CAM classifier must be an nn.Linear, got {type(self.classifier).__name__}.")

    def explain(self, x: torch.Tensor, target: Target) -> Explanation:
        with torch.no_grad(), capture_layer(self.target_layer(x)) as cap:
            logits = logits_of(self.model(x))
        t = resolve_target(target, logits)
        acts = cap.get(self.layer_name)
        weight = self.classifier.weight
        if weight.shape[1] != acts.shape[1]:
            raise ConfigError(
                f"CAM needs the classifier input ({weight.shape[1]} features) to be the global average of "
                f"layer {self.layer_name!r} ({acts.shape[1]} channels); this network is not GAP + FC "
                "at that layer. Use method=gradcam, or pass the GAP input layer."
            )
        w = weight[t].view(*weight[t].shape, *([1] * (acts.dim() - 2)))
        raw = (w * acts).sum(1)
        return self.finish(raw, x, t, logits)
