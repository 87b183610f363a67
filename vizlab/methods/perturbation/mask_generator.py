"""TorchRay's smooth mask generator (Fong et al. 2019, `MaskGenerator`), vectorised.

A coarse grid of parameters m̄ ∈ [0, 1]^{h_in×w_in} (one per `step` pixels) becomes a smooth mask:
every output pixel looks at its (2R+1)² nearest parameters, weights each by a flat-topped kernel
κ(δ/σ) = exp(−2·max(δ/σ − 0.5, 0)²) of its distance δ to that parameter's centre, and pools the
(2R+1)² values with a smooth max (softmax pooling, coldness 20). The full mask has a margin of σ
pixels on every side (it is what the area regulariser sees); the image mask is its central crop.

Sizes (per axis, H the image side, s = step): margin = σ, P = 1 + ⌈(margin + σ)/s⌉,
R = 1 + ⌈σ/s⌉, in = ⌈H/s⌉, mid = in + 2P − (2R+1) + 1, up = s·mid, out = up − s + 1.
Worked examples: (224, s=7, σ=21) → in 32, out 260; (112, 7, 11) → in 16, mid 20, out 134;
(224, 7, 23) → in 32, out 260.

The softmax pooling runs as one fused autograd function (forward and hand-written backward
recompute the (2R+1)² neighbour values block by block instead of storing them), which is what
makes mask generation cheap next to the model's forward/backward. It equals TorchRay's
`MaskGenerator.generate` to float32 rounding (tested against the installed TorchRay).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from vizlab.errors import ConfigError

Pooling = Literal["softmax", "sigmoid", "sum"]
POOLINGS = ("softmax", "sigmoid", "sum")
_BLOCK_ELEMENTS = 1 << 20  # neighbour values per block of the fused pooling (~4 MB of float32)


def smooth_kernel(z: torch.Tensor) -> torch.Tensor:
    """κ(z) = exp(−2·max(z − 0.5, 0)²): 1 out to half a σ, then a Gaussian fall-off."""
    return torch.exp(-2 * (z - 0.5).clamp(min=0) ** 2)


class MaskGenerator:
    """Parameters (K, 1, h_in, w_in) → (image mask (K, 1, H, W), full mask (K, 1, out_h, out_w)).

    shape: (H, W) image size. step: parameter spacing in px (integer, default 7).
    sigma: kernel scale in px (default 21 = 3·step, TorchRay's). pooling: "softmax" (smooth max,
    default), "sigmoid" (σ(c·Σv − 3)) or "sum"; coldness c = 20 (∞ gives a hard max / step).
    clamp: clip the mask to [0, 1] (default True).
    fused: run softmax pooling as the fused blocked function (default); False computes it step by
    step as TorchRay does (same arithmetic, ~3-5× slower on CPU, more memory).
    """

    def __init__(self, shape: tuple[int, int], step: int = 7, sigma: float = 21.0, pooling: Pooling = "softmax",
                 coldness: float = 20.0, clamp: bool = True, device: torch.device | str | None = None,
                 fused: bool = True) -> None:
        if int(step) != step or step < 1:
            raise ConfigError(f"step must be a positive integer (pixels between mask parameters), got {step}.")
        if not sigma > 0:
            raise ConfigError(f"sigma must be > 0 (mask smoothness in pixels), got {sigma}.")
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.shape = (int(shape[0]), int(shape[1]))
        self.step, self.sigma, self.pooling, self.coldness, self.clamp = int(step), sigma, pooling, coldness, clamp
        self.fused = fused
        self.margin = sigma
        self.padding = 1 + math.ceil((self.margin + sigma) / self.step)
        self.radius = 1 + math.ceil(sigma / self.step)
        self.shape_in = [math.ceil(z / self.step) for z in self.shape]
        self.shape_mid = [z + 2 * self.padding - (2 * self.radius + 1) + 1 for z in self.shape_in]
        self.shape_up = [self.step * z for z in self.shape_mid]
        self.shape_out = [z - self.step + 1 for z in self.shape_up]
        self.crop = round(self.margin)
        for axis, name in ((0, "height"), (1, "width")):
            if self.shape_out[axis] - self.crop < self.shape[axis]:
                raise ConfigError(
                    f"step={self.step} and sigma={sigma} give a {self.shape_out[axis]}-px full mask, too small to "
                    f"crop the input {name} of {self.shape[axis]} px after the {self.crop}-px margin; use a larger "
                    f"sigma relative to step (TorchRay uses sigma = 3·step).")
        self.weight = self._weights()  # (1, D, out_h, out_w), D = (2R+1)²
        self._blocked = self._weights_blocked()  # (D, mid_h, s, mid_w, s) or None (see below)
        self.to(device)

    # --- construction -------------------------------------------------------------------------
    def _source_index(self, axis: int) -> torch.Tensor:
        """Nearest-neighbour source cell of every upsampled row/column, as TorchRay computes it."""
        step_inv = torch.tensor(self.shape_mid[axis], dtype=torch.float32) / torch.tensor(
            self.shape_up[axis], dtype=torch.float32)
        return torch.floor(step_inv * torch.arange(self.shape_up[axis], dtype=torch.float32))

    def _weights(self) -> torch.Tensor:
        size = 2 * self.radius + 1
        iy0 = self._source_index(0)[: self.shape_out[0]]
        ix0 = self._source_index(1)[: self.shape_out[1]]
        uy = torch.arange(self.shape_out[0], dtype=torch.float32)
        ux = torch.arange(self.shape_out[1], dtype=torch.float32)
        k = torch.arange(size, dtype=torch.float32)
        iy = iy0[None, :] + k[:, None] - self.padding  # (size, out_h)
        ix = ix0[None, :] + k[:, None] - self.padding  # (size, out_w)
        dy = uy[None, :] - (self.margin + self.step * iy)  # (ky, uy)
        dx = ux[None, :] - (self.margin + self.step * ix)  # (kx, ux)
        delta = torch.sqrt(dy[:, None, :, None] ** 2 + dx[None, :, None, :] ** 2)  # (ky, kx, uy, ux)
        return smooth_kernel(delta / self.sigma).reshape(1, size * size, *self.shape_out)

    def _weights_blocked(self) -> torch.Tensor | None:
        """The weights zero-padded to up×up, per parameter cell, neighbours last: (mid_h, s, mid_w, s, D).

        Valid when the nearest upsampling of TorchRay (index ⌊u·mid/up⌋ in float32) is exactly
        u // step, which holds for the usual steps; otherwise None and the generic path is used.
        """
        s = self.step
        for axis in (0, 1):
            want = torch.arange(self.shape_up[axis]) // s
            if not torch.equal(self._source_index(axis).long(), want):
                return None
        d = self.weight.shape[1]
        padded = F.pad(self.weight[0], (0, s - 1, 0, s - 1))  # (D, up_h, up_w)
        return padded.view(d, self.shape_mid[0], s, self.shape_mid[1], s).permute(1, 2, 3, 4, 0).contiguous()

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> MaskGenerator:
        """Move (and cast) the fixed weights (returns self)."""
        self.weight = self.weight.to(device=device, dtype=dtype)
        if self._blocked is not None:
            self._blocked = self._blocked.to(device=device, dtype=dtype)
        return self

    # --- generation ---------------------------------------------------------------------------
    def neighbours(self, params: torch.Tensor) -> torch.Tensor:
        """(K, 1, h_in, w_in) → (K, mid_h, mid_w, D): each cell's (2R+1)² neighbours (zero padded),
        in F.unfold's order (row-major offsets), neighbours last and contiguous.

        The same values as F.unfold, taken as a strided view of the padded grid and copied once:
        F.unfold (im2col) costs ~1 s for 128 masks of 7×7 parameters on 2 CPU threads in torch 2.14,
        the view ~1 ms, and its backward ~20× less than im2col's.
        """
        size = 2 * self.radius + 1
        padded = F.pad(params[:, 0], (self.padding,) * 4)
        view = padded.unfold(1, size, 1).unfold(2, size, 1)  # (K, mid_h, mid_w, size, size)
        return view.reshape(params.shape[0], *self.shape_mid, size * size)

    def unfold(self, params: torch.Tensor) -> torch.Tensor:
        """(K, 1, h_in, w_in) → (K, D, mid_h, mid_w) by F.unfold, as TorchRay computes it (the
        step-by-step path keeps its arithmetic, gradients included; `neighbours` is the fast form)."""
        size = 2 * self.radius + 1
        cols = F.unfold(params, (size, size), padding=(self.padding, self.padding))
        return cols.view(params.shape[0], size * size, *self.shape_mid)

    def generate(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """params (K, 1, h_in, w_in) → (mask (K, 1, H, W), full mask (K, 1, out_h, out_w)), both in [0, 1]."""
        if params.dim() != 4 or params.shape[1] != 1 or list(params.shape[2:]) != self.shape_in:
            raise ValueError(f"mask parameters must be (K, 1, {self.shape_in[0]}, {self.shape_in[1]}), "
                             f"got {tuple(params.shape)}.")
        fused = (self.fused and self.pooling == "softmax" and math.isfinite(self.coldness) and self._blocked is not None
                 and self.weight.dtype == params.dtype)
        if fused:
            c = float(self.coldness)
            full = SoftmaxPool.apply(self.neighbours(params), self._blocked * c, c)
            full = full.view(params.shape[0], 1, *self.shape_up)[:, :, : self.shape_out[0], : self.shape_out[1]]
        else:
            full = self._pool_reference(self.unfold(params))
        if self.clamp:
            full = full.clamp(min=0, max=1)
        m = self.crop
        mask = full[:, :, m:m + self.shape[0], m:m + self.shape[1]]
        return mask, full

    def _pool_reference(self, cols: torch.Tensor) -> torch.Tensor:
        """TorchRay's formulation step by step (nearest upsampling, crop, weights, pooling)."""
        up = F.interpolate(cols, size=self.shape_up, mode="nearest")
        values = up[:, :, : self.shape_out[0], : self.shape_out[1]] * self.weight
        c = self.coldness
        if self.pooling == "sigmoid":
            total = values.sum(dim=1, keepdim=True)
            return (total - 5 > 0).to(values.dtype) if math.isinf(c) else torch.sigmoid(c * total - 3)
        if self.pooling == "softmax":
            if math.isinf(c):
                return values.max(dim=1, keepdim=True).values
            return (values * F.softmax(c * values, dim=1)).sum(dim=1, keepdim=True)
        return values.sum(dim=1, keepdim=True)

    def __repr__(self) -> str:
        return (f"MaskGenerator(shape={self.shape}, step={self.step}, sigma={self.sigma}, in={self.shape_in}, "
                f"out={self.shape_out}, pooling={self.pooling!r})")


def _blocks(n: int, per_row: int) -> list[slice]:
    """Split n rows into slices of about _BLOCK_ELEMENTS / per_row rows each."""
    size = max(1, _BLOCK_ELEMENTS // max(1, per_row))
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


class SoftmaxPool(torch.autograd.Function):
    """Fused weights × neighbours → softmax pooling, in blocks of parameter-cell rows.

    cols: (K, mh, mw, D) unfolded parameters, neighbours last; scaled: (mh, s, mw, s, D) = c·W.
    With v_d = cols_d·W_d (cols nearest-upsampled by s): out = Σ_d v_d·softmax_d(c·v) → (K, mh, s, mw, s).
    Backward: ∂out/∂v_d = softmax_d·(1 + c·(v_d − out)), recomputed block by block (nothing of size
    K·D·H·W is ever stored).
    """

    @staticmethod
    def forward(ctx, cols: torch.Tensor, scaled: torch.Tensor, coldness: float) -> torch.Tensor:
        k, mh, mw, d = cols.shape
        s = scaled.shape[1]
        out = cols.new_empty(k, mh, s, mw, s)
        for rows in _blocks(mh, k * d * s * mw * s):
            cv = cols[:, rows, None, :, None, :] * scaled[None, rows]  # c·v: (K, r, s, mw, s, D)
            weights = torch.softmax(cv, dim=-1)
            out[:, rows] = cv.mul_(weights).sum(dim=-1)
        out.div_(coldness)
        ctx.save_for_backward(cols, scaled, out)
        ctx.coldness = coldness
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        cols, scaled, out = ctx.saved_tensors
        c = ctx.coldness
        k, mh, mw, d = cols.shape
        s = scaled.shape[1]
        grad_out = grad_out.contiguous()
        scaled_out = out * c
        grad_cols = torch.empty_like(cols)
        for rows in _blocks(mh, k * d * s * mw * s):
            block = scaled[None, rows]
            cv = cols[:, rows, None, :, None, :] * block
            weights = torch.softmax(cv, dim=-1)
            # ∂out/∂v_d · W_d = softmax_d · (1 + c·v_d − c·out) · c·W_d / c
            local = cv.sub_(scaled_out[:, rows, ..., None]).add_(1).mul_(weights)
            local.mul_(grad_out[:, rows, ..., None]).mul_(block)
            grad_cols[:, rows] = local.sum(dim=2).sum(dim=3)  # much faster than sum(dim=(2, 4)) on CPU
        return grad_cols.div_(c), None, None
