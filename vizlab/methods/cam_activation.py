"""Activation-based members of the CAM family (no gradients): Score-CAM and Eigen-CAM, 2-D and 3-D.

Both run the shared pipeline of `vizlab.methods.cam` (capture, combine, upsample, normalise) and
supply only their weights (Score-CAM) or their map (Eigen-CAM).
"""

from __future__ import annotations

import torch
from torch import nn

from vizlab.errors import ConfigError
from vizlab.layers import LayerSpec
from vizlab.methods.base import logits_of, minmax, upsample
from vizlab.methods.cam import TEMPORAL_NOTE, ChannelWeightCAM, LayerSignals, Temporal
from vizlab.methods.registry import register
from vizlab.progress import progress_bar


def frame_units(acts: torch.Tensor) -> torch.Tensor:
    """(N, C, T', H', W') → (N, C·T', T', H', W'): unit (c, t) is channel c with every frame but t zeroed."""
    n, c, t = acts.shape[:3]
    eye = torch.eye(t, device=acts.device, dtype=acts.dtype).view(1, 1, t, t, 1, 1)
    return (acts[:, :, None] * eye).reshape(n, c * t, *acts.shape[2:])


@register
class ScoreCAM(ChannelWeightCAM):
    """Score-CAM (Wang et al. 2020, Algorithm 1): weights from masked forward passes, no gradients.

        H_k = minmax(Up(A_k))                   (each channel upsampled to the input and scaled to [0, 1])
        S_k = y_t(X ∘ H_k)                      (target logit of the input masked by H_k)
        w_k = exp(S_k) / Σ_j exp(S_j),  L = ReLU(Σ_k w_k A_k).

    As pytorch-grad-cam: the *normalised* input is masked (masked-out pixels become 0, the
    dataset-mean colour) and the softmax runs over channels. The authors' code weights by the
    class probability of each masked input instead; the paper's "minus the baseline score" cancels
    in the channel softmax. Upsampling is vizlab's (align_corners=False; pytorch-grad-cam:
    align_corners=True), trilinear for clips.

    Cost: N·C masked forward passes (N·C·T' with temporal="per_frame", where unit (k, t) masks the
    clip with channel k of frame t only and the softmax runs over channels per frame), evaluated
    `batch_size` at a time on the model's device. `progress`: a tqdm bar over the forwards.
    """

    name = "scorecam"
    uses_gradients = False
    summary = "Score-CAM: w_k = softmax_k(y_t(x ∘ minmax(Up(A_k)))); masked forwards, no gradients"
    defaults_note = (f"batch_size 32 masked inputs per forward; masks the normalised input (0 = mean colour) "
                     f"and softmaxes the target logits over channels, as pytorch-grad-cam (the authors' code: "
                     f"class probabilities); {TEMPORAL_NOTE} (C·T' forwards)")

    def __init__(self, model: nn.Module, layer: LayerSpec | None = None, temporal: Temporal = "pooled",
                 batch_size: int = 32, progress: bool = False) -> None:
        super().__init__(model, layer, temporal)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"scorecam.batch_size must be an integer >= 1, got {batch_size!r}.")
        self.batch_size, self.progress = batch_size, progress

    def weights(self, s: LayerSignals) -> torch.Tensor:
        per_frame = s.dims != tuple(range(2, s.acts.dim()))
        units = frame_units(s.acts) if per_frame else s.acts  # (N, U, *S')
        n, u = units.shape[:2]
        scores = torch.empty(n * u, device=s.x.device)
        with progress_bar(total=n * u, desc=self.name, unit="fwd", disable=not self.progress, leave=False) as bar:
            for start in range(0, n * u, self.batch_size):
                idx = torch.arange(start, min(start + self.batch_size, n * u), device=s.x.device)
                sample, unit = idx // u, idx % u
                masks = minmax(upsample(units[sample, unit], s.x.shape[2:]))  # (B, *S)
                logits = logits_of(self.model(s.x[sample] * masks[:, None].to(s.x.dtype)))
                scores[idx] = logits.gather(1, s.target[sample, None])[:, 0].float()
                bar.update(idx.numel())
        if per_frame:
            return scores.view(n, -1, s.acts.shape[2]).softmax(1)[..., None, None].to(s.acts.dtype)
        return scores.view(n, u).softmax(1).view(n, u, *([1] * (s.acts.dim() - 2))).to(s.acts.dtype)


def principal_projection(rows: torch.Tensor) -> torch.Tensor:
    """(G, P, C) activations of P positions → (G, P) projection of the centred rows on their first
    principal direction, flipped where |min| > |max| (Seg-Eigen-CAM's sign correction, eq. 13).

    The direction comes from the eigendecomposition of the smaller Gram matrix (P × P or C × C,
    float64): the same projection as the SVD, O·v₁ = σ₁·u₁, at a fraction of a batched SVD's cost.
    """
    centred = (rows - rows.mean(1, keepdim=True)).double()
    if centred.shape[1] <= centred.shape[2]:  # O Oᵀ = U Σ² Uᵀ: projection = σ₁ u₁
        values, vectors = torch.linalg.eigh(centred @ centred.transpose(1, 2))
        proj = vectors[..., -1] * values[..., -1:].clamp_min(0).sqrt()
    else:  # Oᵀ O = V Σ² Vᵀ: projection = O v₁
        _, vectors = torch.linalg.eigh(centred.transpose(1, 2) @ centred)
        proj = (centred @ vectors[..., -1:])[..., 0]
    flip = proj.min(1, keepdim=True).values.abs() > proj.max(1, keepdim=True).values.abs()
    return torch.where(flip, -proj, proj).to(rows.dtype)


@register
class EigenCAM(ChannelWeightCAM):
    """Eigen-CAM (Muhammad & Yeasin 2020): the first principal component of the layer's activations.

        O = A reshaped to (positions, channels), centred per channel;  O = U Σ Vᵀ (first component only);
        L = O · v_1  (the projection on the first right singular vector),  saliency = minmax(Up(ReLU(L))).

    Class-agnostic (the target is resolved but does not change the map) and gradient-free.
    Sign rule: an SVD's sign is arbitrary, and pytorch-grad-cam's EigenCAM keeps whatever LAPACK
    returns; vizlab flips L where |min L| > |max L| (the sign correction of Seg-Eigen-CAM, Chung &
    Ying 2025, eq. 13, which pytorch-grad-cam ships as `get_2d_projection_with_sign_correction`),
    so the strongest response is positive. temporal="per_frame" decomposes each frame on its own.
    """

    name = "eigencam"
    uses_gradients = False
    summary = "Eigen-CAM: projection of the centred activations on their first principal direction"
    defaults_note = ("class-agnostic; sign: flipped where |min| > |max| (Seg-Eigen-CAM's rule; pytorch-grad-cam's "
                     "EigenCAM keeps LAPACK's arbitrary sign); video: `per_frame` = one decomposition per frame")

    def combine(self, s: LayerSignals) -> torch.Tensor:
        acts = s.acts
        if s.dims == (3, 4) and acts.dim() == 5:  # one decomposition per frame
            n, c, t = acts.shape[:3]
            rows = acts.permute(0, 2, 3, 4, 1).reshape(n * t, -1, c)
            return principal_projection(rows).view(n, t, *acts.shape[3:])
        rows = acts.flatten(2).transpose(1, 2)  # (N, P, C)
        return principal_projection(rows).view(acts.shape[0], *acts.shape[2:])
