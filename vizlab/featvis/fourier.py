"""Images parametrised in a decorrelated Fourier space, and random jitter / scale / rotation per
step: the feature-visualisation recipe of Olah et al. ("Feature Visualization", Distill 2017; the
Lucid library), written here for vizlab in torch.

image = sigmoid(C · irfftn(s ⊙ spectrum) / 4), with s(f) = 1 / max(|f|, 1/max side)^decay the
1/f amplitude scale that makes every frequency equally easy to change, and C the square root of
ImageNet's colour covariance (normalised to unit largest column norm), so that steps are taken
in decorrelated colour. Clips (N, 3, T, H, W) use a 3-D spectrum over (T, H, W).

`FourierImage.from_images(x01)` inverts the map exactly, so the Fourier run starts from the same
images as the pixel run (the cluster's weighted mean image).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Square root of the colour correlation of ImageNet images (the Lucid recipe's constants).
COLOR_CORRELATION_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))


def color_matrix(device: torch.device | str = "cpu") -> torch.Tensor:
    m = torch.tensor(COLOR_CORRELATION_SQRT, dtype=torch.float32, device=device)
    return m / m.norm(dim=0).max()


def frequency_scale(shape: tuple[int, ...], decay: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """1 / max(|f|, 1/max(shape))^decay on the rfftn grid of `shape` ((H, W) or (T, H, W))."""
    axes = [torch.fft.fftfreq(n, device=device) for n in shape[:-1]] + [torch.fft.rfftfreq(shape[-1], device=device)]
    grids = torch.meshgrid(*axes, indexing="ij")
    freq = torch.sqrt(sum(g ** 2 for g in grids))
    return 1.0 / freq.clamp_min(1.0 / max(shape)) ** decay


class FourierImage(nn.Module):
    """K images (K, 3, *S) as a learnable spectrum; forward() → images in (0, 1)."""

    def __init__(self, shape: tuple[int, ...], decay: float = 1.0, decorrelate: bool = True,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.shape = tuple(shape)               # (K, 3, *S)
        self.spatial = self.shape[2:]
        self.dims = tuple(range(2, len(self.shape)))
        self.register_buffer("scale", frequency_scale(self.spatial, decay, device))
        self.register_buffer("color", color_matrix(device) if decorrelate else torch.eye(3, device=device))
        freq_shape = (*self.shape[:2], *self.scale.shape)
        self.spectrum = nn.Parameter(torch.zeros((*freq_shape, 2), device=device))

    def _mix(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,kj...->ki...", matrix, x)

    def forward(self) -> torch.Tensor:
        spec = torch.view_as_complex(self.spectrum) * self.scale
        linear = torch.fft.irfftn(spec, s=self.spatial, dim=self.dims, norm="ortho") / 4
        return torch.sigmoid(self._mix(linear, self.color))

    @torch.no_grad()
    def set_images(self, x01: torch.Tensor, eps: float = 1e-3) -> FourierImage:
        """Set the spectrum so that forward() returns `x01` (clamped to [eps, 1 − eps])."""
        logits = torch.logit(x01.float().clamp(eps, 1 - eps))
        linear = self._mix(logits, torch.linalg.inv(self.color)) * 4
        spec = torch.fft.rfftn(linear, dim=self.dims, norm="ortho") / self.scale
        self.spectrum.copy_(torch.view_as_real(spec))
        return self

    @classmethod
    def from_images(cls, x01: torch.Tensor, decay: float = 1.0, decorrelate: bool = True) -> FourierImage:
        return cls(tuple(x01.shape), decay, decorrelate, x01.device).set_images(x01)


def random_transform(x: torch.Tensor, generator: torch.Generator, pad: int = 12, jitter: int = 8,
                     scale: float = 0.1, rotate: float = 10.0) -> torch.Tensor:
    """Pad by `pad` px (grey 0.5), then one random affine map back to the input size: translation
    uniform in ±jitter px, zoom uniform in [1 − scale/2, 1 + scale/2], rotation uniform in ±rotate
    degrees (one draw per call, shared by the batch, drawn on the CPU `generator`).
    x: (N, 3, H, W) or (N, 3, T, H, W) in [0, 1] (clips: the same map for every frame)."""
    video = x.dim() == 5
    if video:
        n, c, t, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), value=0.5) if pad > 0 else x
    ph, pw = padded.shape[-2:]
    u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    dx, dy = (2 * u[0] - 1) * jitter, (2 * u[1] - 1) * jitter
    zoom = 1 + (u[2] - 0.5) * scale
    angle = math.radians((2 * u[3] - 1) * rotate)
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    # output pixel grid (normalised to the output) → padded input coordinates (normalised to it)
    sx, sy = w / pw, h / ph
    theta = torch.tensor([[cos * sx, -sin * sx * h / w, 2 * dx / pw],
                          [sin * sy * w / h, cos * sy, 2 * dy / ph]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), [x.shape[0], x.shape[1], h, w], align_corners=False)
    out = F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if video:
        out = out.reshape(n, t, c, h, w).permute(0, 2, 1, 3, 4)
    return out
