"""Perturbation pyramids: TorchRay's `Perturbation`, batched over images (and video frames).

A pyramid holds L increasingly perturbed copies of every input image (level 0 = strongest
perturbation, level L−1 = the input itself). `apply(mask, source)` reads, per pixel, the level
picked by the mask value with linear interpolation between two neighbouring levels — one
`torch.gather` along the level axis per neighbour, for every mask of the batch at once.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from vizlab.errors import ConfigError

PerturbationKind = Literal["blur", "fade"]
PERTURBATIONS = ("blur", "fade")

# TorchRay's imsmooth constants, in single precision as it computes them.
_SQRT_TWO = torch.tensor(math.sqrt(2.0), dtype=torch.float32)
_EPSILON = torch.tensor(1.19209290e-07, dtype=torch.float32)


def gaussian_kernel1d(sigma: float | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """TorchRay's 1-D Gaussian: taps i ∈ [−⌈4σ⌉, ⌈4σ⌉], f_i ∝ exp(−i²/(2σ²)), normalised to sum 1.

    Computed in float32 exactly as `torchray.utils.imsmooth` does (denominator √2·σ + 1.19e−7),
    so σ = 0 gives the 1-tap identity filter [1].
    """
    sigma_t = torch.as_tensor(sigma, dtype=torch.float32)
    width = math.ceil(float(4 * sigma_t))
    taps = torch.arange(-width, width + 1, dtype=torch.float32) / (_SQRT_TWO * sigma_t + _EPSILON)
    taps = torch.exp(-taps * taps)
    return (taps / taps.sum()).to(device)


def gaussian_blur(x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with zero padding, same size (TorchRay's imsmooth).

    Vertical pass first, then horizontal, every channel independently.
    """
    taps = gaussian_kernel1d(sigma, x.device).to(x.dtype)
    width = (taps.numel() - 1) // 2
    if width == 0:
        return x.clone()
    b, c, h, w = x.shape
    flat = x.reshape(b * c, 1, h, w)
    flat = F.conv2d(flat, taps.view(1, 1, -1, 1), padding=(width, 0))
    flat = F.conv2d(flat, taps.view(1, 1, 1, -1), padding=(0, width))
    return flat.view(b, c, h, w)


def level_values(num_levels: int) -> torch.Tensor:
    """s_l = l / (L − 1) for l = 0..L−1 (float32, as torch.linspace gives them to TorchRay)."""
    return torch.linspace(0, 1, num_levels)


class PerturbationPyramid:
    """L perturbed copies of B images, (B, L, C, H, W), and the per-pixel interpolation between them.

    x: (B, C, H, W) normalised images (video: frames flattened to B = N·T).
    kind="blur": level l = GaussBlur(x, σ = (1 − l/(L−1))·max_blur), zero padding (so borders fade
    towards 0, the dataset mean in normalised space). kind="fade": level l = x · l/(L−1).
    Defaults: L = 8 levels, max_blur = 20 px (TorchRay's).
    """

    def __init__(self, x: torch.Tensor, num_levels: int = 8, kind: PerturbationKind = "blur",
                 max_blur: float = 20.0) -> None:
        if kind not in PERTURBATIONS:
            raise ConfigError(f"perturbation must be one of {PERTURBATIONS}, got {kind!r}.")
        if int(num_levels) != num_levels or num_levels < 2:
            raise ConfigError(f"num_levels must be an integer >= 2, got {num_levels}.")
        if not max_blur > 0:
            raise ConfigError(f"max_blur must be > 0, got {max_blur}.")
        self.kind, self.num_levels, self.max_blur = kind, int(num_levels), float(max_blur)
        with torch.no_grad():
            levels = []
            for s in level_values(self.num_levels):
                if kind == "blur":
                    levels.append(gaussian_blur(x, (1 - s) * self.max_blur))
                else:
                    levels.append(x * s.to(x))
            self.pyramid = torch.stack(levels, dim=1).contiguous()  # (B, L, C, H, W)

    @property
    def shape(self) -> torch.Size:
        return self.pyramid.shape

    def apply(self, mask: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """Perturb with K masks: mask (K, 1, H, W) in [0, 1] → (K, C, H, W).

        source: (K,) long, the pyramid row (image) each mask applies to; None = row k for mask k.
        With w = m·(L−1), k = ⌊w⌋, φ = w − k: out = (1 − φ)·y_k + φ·y_{min(k+1, L−1)} per pixel,
        so m = 1 keeps the input and m = 0 gives the strongest perturbation. Differentiable in m.
        """
        b, levels, c, h, w = self.pyramid.shape
        k_masks = mask.shape[0]
        if source is None:
            if k_masks != b:
                raise ValueError(f"{k_masks} masks for a pyramid of {b} images: pass `source`.")
            source = torch.arange(b, device=mask.device)
        scaled = mask.reshape(k_masks, 1, h * w) * (levels - 1)
        low = scaled.detach().floor()
        frac = scaled - low
        low = low.long().clamp_(0, levels - 1)
        high = (low + 1).clamp_(max=levels - 1)
        base = (source.to(mask.device).long() * levels).view(k_masks, 1, 1)
        flat = self.pyramid.view(b * levels, c, h * w)
        y0 = flat.gather(0, (base + low).expand(k_masks, c, h * w))
        y1 = flat.gather(0, (base + high).expand(k_masks, c, h * w))
        return torch.lerp(y0, y1, frac).view(k_masks, c, h, w)

    def __repr__(self) -> str:
        return f"PerturbationPyramid(kind={self.kind!r}, levels={self.num_levels}, shape={list(self.pyramid.shape)})"
