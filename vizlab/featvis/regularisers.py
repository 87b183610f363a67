"""Image-domain regularisers of the original, as batched torch ops on the device.

All take images in [0, 1] of shape (N, C, H, W) or clips (N, C, T, H, W); the spatial ops act on
(H, W) only (each frame of a clip on its own).
- `centre_mask`: the gradient / blend mask, analytic (the original rebuilt it every iteration with
  a Python double loop over every pixel).
- `gaussian_blur`: separable Gaussian (reflect-101 borders, radius ⌈3σ⌉, as OpenCV's GaussianBlur
  with that kernel size; the original used imgaug's GaussianBlur).
- `tv_bregman`: split-Bregman TV denoising with skimage's `denoise_tv_bregman` update rules
  (weight = λ/2, Bregman parameter 2·weight, its shrinkage, per-image stop when the RMS change
  < eps), vectorised: a red-black Gauss-Seidel sweep where skimage sweeps in raster order, and
  Neumann (replicated) borders where skimage keeps a fixed frame of input pixels (so its border
  pixels are smoothed less). Its ROF energy is at or below skimage's (tests/test_featvis_parts.py).
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F

# The original's mask is (σ√2π)^-1 · ε^(½((r − 1)/σ)²) with ε the float64 machine epsilon, i.e. a
# Gaussian in r − 1 of std σ/√|ln ε| = σ/6.0036 (min-max normalised, so the prefactor cancels).
MASK_STD_DIVISOR = math.sqrt(-math.log(sys.float_info.epsilon))


def centre_mask(height: int, width: int, sigma: float, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(height, width) mask in [0, 1]: exp(−½((r − 1)/(σ/6.0036))²) of the distance r to pixel
    (height // 2, width // 2), min-max normalised (1 at the centre ring, 0 at the farthest pixel)."""
    y = torch.arange(height, device=device, dtype=torch.float64) - height // 2
    x = torch.arange(width, device=device, dtype=torch.float64) - width // 2
    r = torch.sqrt(y[:, None] ** 2 + x[None, :] ** 2)
    g = torch.exp(-0.5 * ((r - 1) / (sigma / MASK_STD_DIVISOR)) ** 2)
    lo, hi = g.min(), g.max()
    g = (g - lo) / (hi - lo) if hi > lo else torch.ones_like(g)
    return g.to(dtype)


def _frames(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(N, C, [T,] H, W) → (N·T, C, H, W) and the shape to restore."""
    if x.dim() == 5:
        n, c, t, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w), (n, c, t, h, w)
    return x, tuple(x.shape)


def _unframes(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if len(shape) == 5:
        n, c, t, h, w = shape
        return x.reshape(n, t, c, h, w).permute(0, 2, 1, 3, 4)
    return x


def gaussian_kernel(sigma: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Normalised 1-D Gaussian of std `sigma`, radius ⌈3σ⌉ (at least 1)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Spatial Gaussian blur of images or clips (reflect-101 borders); σ <= 0 returns x."""
    if sigma <= 0:
        return x
    frames, shape = _frames(x)
    k = gaussian_kernel(sigma, x.device).to(x.dtype)
    r = k.numel() // 2
    c = frames.shape[1]
    pad_h, pad_w = min(r, frames.shape[-2] - 1), min(r, frames.shape[-1] - 1)
    out = F.pad(frames, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    if pad_w < r or pad_h < r:  # images smaller than the kernel: replicate beyond one reflection
        out = F.pad(out, (r - pad_w, r - pad_w, r - pad_h, r - pad_h), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return _unframes(out, shape)


def tv_bregman(x: torch.Tensor, weight: float, max_iter: int = 100, eps: float = 1e-3) -> torch.Tensor:
    """Isotropic TV denoising by split Bregman: approximately argmin_u Σ|∇u| + weight·‖u − x‖².

    x: (N, C, H, W) or (N, C, T, H, W) in [0, 1]; channels are denoised independently, the stop
    rule (RMS change of u < eps after a sweep, as skimage) is per image (per frame for clips) over
    all its channels. A smaller weight denoises more. Returns a new tensor.

    Each iteration is one red-black Gauss-Seidel sweep of the u-subproblem (skimage sweeps in raster
    order; a plain Jacobi sweep diverges here) followed by skimage's d- and b-updates from the
    forward differences of the previous u.
    """
    f, shape = _frames(x)
    lam = 2.0 * weight
    norm = weight + 4.0 * lam
    data = f * (weight / norm)
    c = lam / norm
    u = f.clone()
    dx, dy, bx, by = (torch.zeros_like(f) for _ in range(4))
    h, w = f.shape[-2:]
    grid = torch.arange(h, device=f.device)[:, None] + torch.arange(w, device=f.device)[None, :]
    colours = (grid % 2 == 0, grid % 2 == 1)
    active = torch.ones(f.shape[0], 1, 1, 1, dtype=torch.bool, device=f.device)
    all_active = True
    for _ in range(max_iter):
        p = F.pad(u, (1, 1, 1, 1), mode="replicate")
        ux = p[..., 1:-1, 2:] - u                                   # forward differences, 0 across the far border
        uy = p[..., 2:, 1:-1] - u
        ex, ey = dx - bx, dy - by
        rhs = F.pad(ex, (1, 0))[..., :-1] - ex + F.pad(ey, (0, 0, 1, 0))[..., :-1, :] - ey
        new = u
        for colour in colours:
            q = p if new is u else F.pad(new, (1, 1, 1, 1), mode="replicate")
            neighbours = q[..., 2:, 1:-1] + q[..., :-2, 1:-1] + q[..., 1:-1, 2:] + q[..., 1:-1, :-2]
            new = torch.where(colour, (neighbours + rhs) * c + data, new)
        tx, ty = ux + bx, uy + by
        s = torch.sqrt(tx * tx + ty * ty) * lam
        shrink = s / (s + 1)
        ndx, ndy = shrink * tx, shrink * ty
        rmse = (new - u).flatten(1).pow(2).mean(1).sqrt().view(-1, 1, 1, 1)
        if all_active:
            u, dx, dy, bx, by = new, ndx, ndy, bx + ux - ndx, by + uy - ndy
        else:
            u = torch.where(active, new, u)
            dx = torch.where(active, ndx, dx)
            dy = torch.where(active, ndy, dy)
            bx = torch.where(active, bx + ux - ndx, bx)
            by = torch.where(active, by + uy - ndy, by)
        active = active & (rmse > eps)
        all_active = bool(active.all())
        if not all_active and not bool(active.any()):
            break
    return _unframes(u, shape)


def add_brightness(x: torch.Tensor, value: float) -> torch.Tensor:
    """x + value (in [0, 1] units; the original adds 5 of 255), clipped to [0, 1]."""
    return (x + value).clamp(0, 1)


def quantise(x: torch.Tensor) -> torch.Tensor:
    """The original's uint8 round trip: round(255·clip(x, 0, 1)) / 255."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def truncate_uint8(x: torch.Tensor) -> torch.Tensor:
    """The original's `.astype(np.uint8)` on float 0…255 data (truncation toward zero) / 255."""
    return torch.floor(x.clamp(0, 1) * 255) / 255
