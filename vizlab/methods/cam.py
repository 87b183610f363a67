"""The CAM family for 2-D and 3-D CNNs: one shared pipeline, each member supplies its weights.

Every member reads one layer's feature map A (N, C, *S'), S' = (H', W') or (T', H', W'), and maps
it to the signed layer-resolution map  L = Σ_c w_c · A_c  (`raw`); the saliency is
minmax(upsample(ReLU(L))) at input resolution, in [0, 1]. `LayerMethod.explain` does the shared
work: capture A (and, for gradient members, ∂y_t/∂A with the autograd graph starting at the layer,
so the backward pass stops there), resolve the target, combine, upsample, normalise. A member
implements `weights(s)` — channel weights (N, C, 1, ...) or a per-position map (N, C, *S') — or,
when its map is not a weighted sum, `combine(s)`.

`temporal` is the weighting rule for video layers (N, C, T', H', W'), shared by every member with
channel weights: "pooled" shares one weight per channel over T', H', W' (`s.dims` = (2, 3, 4)),
"per_frame" gives one weight per channel and frame (`s.dims` = (3, 4)). Images always pool over
(H', W').

Activation-based members (Score-CAM, Eigen-CAM) live in `vizlab.methods.cam_activation`.
"""

from __future__ import annotations

from dataclasses import dataclass
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
TEMPORAL = ("pooled", "per_frame")


def check_temporal(temporal: str) -> str:
    if temporal not in TEMPORAL:
        raise ConfigError(f"temporal must be 'pooled' or 'per_frame', got {temporal!r}.")
    return temporal


def weight_dims(acts: torch.Tensor, temporal: str) -> tuple[int, ...]:
    """Axes of `acts` (N, C, *S') that one channel weight is shared over under the `temporal` rule."""
    if temporal == "per_frame" and acts.dim() == 5:
        return (3, 4)
    return tuple(range(2, acts.dim()))


@dataclass
class LayerSignals:
    """What a CAM member sees.

    acts: (N, C, *S') layer output (detached). grads: ∂y_t/∂A, same shape (None for members
    without gradients). x: (N, C_in, *S) input. target: (N,) classes. logits: (N, K) clean logits.
    dims: the axes one channel weight is shared over (the `temporal` rule).
    """

    acts: torch.Tensor
    grads: torch.Tensor | None
    x: torch.Tensor
    target: torch.Tensor
    logits: torch.Tensor
    dims: tuple[int, ...]


class LayerMethod(AttributionMethod):
    """Shared pipeline of methods that read one layer's feature map.

    layer=None: the zoo model's default layer; for a plain nn.Module, the last module whose output
    is a spatial feature map (the input of global pooling), found by one probing forward pass on
    the first call.
    """

    family = "cam"
    uses_gradients = True  # False: one no-grad forward (CAM, Score-CAM, Eigen-CAM)
    temporal: str = "pooled"

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

    # --- the shared pipeline ------------------------------------------------------------------
    def explain(self, x: torch.Tensor, target: Target) -> Explanation:
        s = self.signals(x, target)
        with torch.no_grad():
            raw = self.combine(s)
        return self.finish(raw, x, s.target, s.logits)

    def signals(self, x: torch.Tensor, target: Target) -> LayerSignals:
        """One forward pass capturing the layer (and, with gradients, one backward pass to it only)."""
        layer = self.target_layer(x)
        if not self.uses_gradients:
            with torch.no_grad(), capture_layer(layer) as cap:
                logits = logits_of(self.model(x))
            acts = cap.get(self.layer_name)
            t = resolve_target(target, logits)
            return LayerSignals(acts, None, x, t, logits, weight_dims(acts, self.temporal))
        with torch.enable_grad():
            with capture_layer(layer, start_graph=True) as cap:
                logits = logits_of(self.model(x))
            t = resolve_target(target, logits)
            acts = cap.get(self.layer_name)
            score = target_score(logits, t)
            if not score.requires_grad:
                raise InputError(f"Layer {self.layer_name!r} does not influence the logits; "
                                 "choose a layer on the path to the output.")
            (grads,) = torch.autograd.grad(score, acts)
        acts = acts.detach()
        return LayerSignals(acts, grads, x, t, logits.detach(), weight_dims(acts, self.temporal))

    def combine(self, s: LayerSignals) -> torch.Tensor:
        """(N, *S') signed map: Σ_c weights · A_c."""
        return (self.weights(s) * s.acts).sum(1)

    def weights(self, s: LayerSignals) -> torch.Tensor:  # pragma: no cover
        """Channel weights (N, C, 1, ...) — or (N, C, T', 1, 1) per frame — or a per-position map (N, C, *S')."""
        raise NotImplementedError

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


_LayerMethod = LayerMethod  # its earlier name


class ChannelWeightCAM(LayerMethod):
    """A member with one weight per channel (per frame with temporal="per_frame")."""

    def __init__(self, model: nn.Module, layer: LayerSpec | None = None, temporal: Temporal = "pooled") -> None:
        super().__init__(model, layer)
        self.temporal = check_temporal(temporal)


@register
class CAM(LayerMethod):
    """Class Activation Mapping (Zhou et al. 2016) for GAP + FC networks: L = Σ_c W[t, c] · A_c.

    `layer` is the last feature map (the GAP input); `classifier` the final nn.Linear
    (default: the zoo's classifier or the last Linear). One forward pass, no gradients.
    """

    name = "cam"
    uses_gradients = False
    summary = "Σ_c W[t, c]·A_c for GAP + FC nets; one forward, no gradients"
    defaults_note = "layer = the GAP input, classifier = the final Linear"

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

    def weights(self, s: LayerSignals) -> torch.Tensor:
        weight = self.classifier.weight
        if weight.shape[1] != s.acts.shape[1]:
            raise ConfigError(
                f"CAM needs the classifier input ({weight.shape[1]} features) to be the global average of "
                f"layer {self.layer_name!r} ({s.acts.shape[1]} channels); this network is not GAP + FC "
                "at that layer. Use method=gradcam, or pass the GAP input layer."
            )
        w = weight[s.target]
        return w.view(*w.shape, *([1] * (s.acts.dim() - 2)))


TEMPORAL_NOTE = ("video: `temporal=pooled` (one weight per channel over T', H', W'); `per_frame`: "
                 "one per channel and frame")


@register
class GradCAM(ChannelWeightCAM):
    """Grad-CAM (Selvaraju et al. 2017): L = ReLU(Σ_c w_c · A_c), w_c = mean over positions of ∂y_t/∂A_c.

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
    summary = "ReLU(Σ_c w_c A_c), w_c = mean ∂y_t/∂A_c"
    defaults_note = ("video: `temporal=pooled` (one weight per channel over T, H, W — the paper's global-average "
                     "rule, as Captum and pytorch-grad-cam do; less noisy). `per_frame` = the video perturbation "
                     "paper's per-frame weights")

    def weights(self, s: LayerSignals) -> torch.Tensor:
        return s.grads.mean(dim=s.dims, keepdim=True)


@register
class GradCAMPlusPlus(ChannelWeightCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with the exponential score):

        g = ∂y_t/∂A,  α_c,ij = g_c,ij² / (2 g_c,ij² + Σ_ab A_c,ab · g_c,ij³),
        w_c = Σ_ij α_c,ij · ReLU(g_c,ij),  L = ReLU(Σ_c w_c A_c).

    Sums run over `s.dims` (all positions, or each frame's with temporal="per_frame"). α = 0 where
    the denominator is 0 (g = 0), as the authors' code; pytorch-grad-cam instead adds 1e-6 to every
    denominator, which shrinks α where gradients are small (|g| ≲ 1e-3).
    """

    name = "gradcampp"
    summary = "Grad-CAM++: w_c = Σ α_c,ij ReLU(g_c,ij), α = g² / (2g² + ΣA·g³)"
    defaults_note = f"α = 0 where g = 0 (authors' code; pytorch-grad-cam adds 1e-6 to the denominator); {TEMPORAL_NOTE}"

    def weights(self, s: LayerSignals) -> torch.Tensor:
        g2 = s.grads.pow(2)
        denom = 2 * g2 + s.acts.sum(dim=s.dims, keepdim=True) * g2 * s.grads
        alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1), 0)
        return (alpha * s.grads.clamp_min(0)).sum(dim=s.dims, keepdim=True)


@register
class XGradCAM(ChannelWeightCAM):
    """XGrad-CAM (Fu et al. 2020): w_c = Σ_ij (A_c,ij / Σ_ab A_c,ab) · ∂y_t/∂A_c,ij,  L = ReLU(Σ_c w_c A_c).

    Sums over `s.dims`. A channel whose activations sum to 0 gets weight 0 (pytorch-grad-cam adds
    1e-7 to the sum instead).
    """

    name = "xgradcam"
    summary = "XGrad-CAM: w_c = Σ_ij (A_c,ij / Σ A_c) ∂y_t/∂A_c,ij"
    defaults_note = f"channels with Σ A = 0 get weight 0; {TEMPORAL_NOTE}"

    def weights(self, s: LayerSignals) -> torch.Tensor:
        total = s.acts.sum(dim=s.dims, keepdim=True)
        share = torch.where(total != 0, s.acts / torch.where(total != 0, total, 1), 0)
        return (share * s.grads).sum(dim=s.dims, keepdim=True)


@register
class LayerCAM(LayerMethod):
    """LayerCAM (Jiang et al. 2021): L = ReLU(Σ_c ReLU(∂y_t/∂A_c,ij) · A_c,ij).

    The weights are per position (a map, not one number per channel), so there is no temporal
    rule to choose: every frame and pixel has its own weight. Works at shallow layers too.
    """

    name = "layercam"
    summary = "LayerCAM: ReLU(Σ_c ReLU(∂y_t/∂A_c) ⊙ A_c), weights per position"
    defaults_note = "per-position weights (no `temporal` option needed on video)"

    def weights(self, s: LayerSignals) -> torch.Tensor:
        return s.grads.clamp_min(0)
