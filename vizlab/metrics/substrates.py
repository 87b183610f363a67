"""Substrates for deletion/insertion: what a removed (or not yet revealed) position becomes.

All substrates are built in the model's normalised input space from x (N, C, *S).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vizlab.errors import ConfigError

Substrate = str | Callable[[torch.Tensor], torch.Tensor]
SUBSTRATES = ("zeros", "normalized_zeros", "blur", "mean")


@cache
def rise_kernel(klen: int = 11, nsig: float = 5.0) -> torch.Tensor:
    """RISE's blur kernel: scipy's gaussian_filter applied to a centred delta (klen × klen)."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((klen, klen))
    delta[klen // 2, klen // 2] = 1
    return torch.from_numpy(gaussian_filter(delta, nsig)).float()


def gaussian_blur(x: torch.Tensor, klen: int = 11, nsig: float = 5.0) -> torch.Tensor:
    """Blur every channel (and every frame of a clip) with RISE's kernel, zero padding."""
    kernel = rise_kernel(klen, nsig).to(x)
    c = x.shape[1]
    weight = kernel.expand(c, 1, klen, klen).contiguous()
    if x.dim() == 5:  # (N, C, T, H, W): blur each frame
        n, _, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        out = F.conv2d(frames, weight, padding=klen // 2, groups=c)
        return out.view(n, t, c, h, w).permute(0, 2, 1, 3, 4)
    return F.conv2d(x, weight, padding=klen // 2, groups=c)


def black(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Black in pixel space, expressed in the model's normalised space (zeros for plain modules)."""
    normalize = getattr(model, "normalize", None)
    return normalize(torch.zeros_like(x)) if normalize is not None else torch.zeros_like(x)


def make_substrate(spec: Substrate, model: nn.Module, x: torch.Tensor, blur_klen: int = 11,
                   blur_sigma: float = 5.0) -> torch.Tensor:
    """Substrate like x (normalised space).

    "zeros": black in pixel space; "normalized_zeros": zeros of the normalised tensor, i.e. the
    dataset-mean colour (what RISE's `torch.zeros_like` on normalised images gives); "blur":
    Gaussian blur (RISE kernel, klen 11, σ 5, zero padding); "mean": per-sample, per-channel
    mean; or a callable x → tensor like x.
    """
    if callable(spec):
        out = spec(x)
        if out.shape != x.shape:
            raise ConfigError(f"Custom substrate returned shape {tuple(out.shape)}, expected {tuple(x.shape)}.")
        return out
    if spec == "zeros":
        return black(model, x)
    if spec == "normalized_zeros":
        return torch.zeros_like(x)
    if spec == "blur":
        return gaussian_blur(x, blur_klen, blur_sigma)
    if spec == "mean":
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True).expand_as(x)
    raise ConfigError(f"Unknown substrate {spec!r}; valid: {', '.join(SUBSTRATES)} or a callable.")
