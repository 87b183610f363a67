"""The constrained attention filters of L2-CAF: R filters over a layer's map, and the constraint
that turns each filter's parameters f into the filter f̂ multiplied onto the feature map.

Map shape S' = (H', W') or (T', H', W'). A filter is normalised over `groups` × `positions`:
one group over all of S' (images; clips with temporal="joint"), or one group per frame
(temporal="per_frame": T' groups of H'·W' positions).

Constraints (per group):
  l2norm   f̂ = f / max(‖f‖₂, 1e-12)                                   (the PyTorch port's F.normalize)
  softmax  f̂ = softmax(f)
  gauss    f̂ = a Gaussian over the group's grid, normalised to sum 1, with a learnable centre μ
           (and, with learn_covariance, a learnable covariance through its precision Σ⁻¹ = P·Pᵀ, P
           lower-triangular with a positive diagonal). Grid coordinates are centred on the map, c = i − (n − 1)/2 along each
           axis (n = 7: −3 … 3, the TF original's grid), so any size works, odd or even, square or not.
           Coordinates are ordered like the axes: (y, x), or (t, y, x) for a joint clip filter
           (the TF original orders them (x, y)). Σ starts at sigma²·I (TF: I, fixed).
Initial parameters: init="ones" (f = 1 → the uniform filter; μ = 0 → the centre) or "normal"
(𝒩(0, 1) draws, the TF original's; one draw shared by every row, so rows are interchangeable).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

CONSTRAINTS = ("l2norm", "softmax", "gauss")
INITS = ("ones", "normal")


class ConstrainedFilters:
    """R filters over maps of shape `shape` (S'); `per_frame` gives each of the T' frames its own
    normalisation (and its own Gaussian). Parameters are leaf tensors in `params`.

    constrained(rows) → f̂ (r, *S') for rows `rows` (None: all R), differentiable in the params.
    """

    def __init__(self, constraint: str, shape: Sequence[int], rows: int, per_frame: bool = False,
                 init: str = "ones", seed: int = 0, learn_covariance: bool = False, sigma: float = 1.0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.constraint, self.shape, self.rows = constraint, tuple(int(s) for s in shape), rows
        self.per_frame = per_frame and len(self.shape) == 3
        self.axes = self.shape[1:] if self.per_frame else self.shape        # the axes one group spans
        self.groups = self.shape[0] if self.per_frame else 1
        self.positions = math.prod(self.axes)
        self.learn_covariance, self.sigma = learn_covariance, float(sigma)
        generator = torch.Generator().manual_seed(int(seed))
        kw = {"device": device, "dtype": dtype}

        def start(*size: int) -> torch.Tensor:
            one = torch.ones(size) if init == "ones" else torch.randn(size, generator=generator)
            return one.to(**kw).expand(rows, *size).clone().requires_grad_(True)

        if constraint == "gauss":
            d = len(self.axes)
            coords = [torch.arange(n, **kw) - (n - 1) / 2 for n in self.axes]
            self.grid = torch.stack(torch.meshgrid(*coords, indexing="ij"), dim=-1).reshape(-1, d)  # (P, D)
            mu = start(self.groups, d)
            if init == "ones":
                with torch.no_grad():
                    mu.zero_()
            self.params = [mu]
            if learn_covariance:
                self.tril = torch.tril_indices(d, d, offset=-1, device=device)
                log_diag = torch.zeros(rows, self.groups, d, **kw).requires_grad_(True)
                off = torch.zeros(rows, self.groups, self.tril.shape[1], **kw).requires_grad_(True)
                self.params += [log_diag, off]
        else:
            self.params = [start(self.groups, self.positions)]
        self.frozen = torch.zeros(rows, dtype=torch.bool, device=device)
        self.any_frozen = False
        self.saved = [p.detach().clone() for p in self.params]

    # --- the constraint -----------------------------------------------------------------------
    def constrained(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """f̂ (r, *S') for the given rows (None: all)."""
        params = self.params if rows is None else [p[rows] for p in self.params]
        if self.constraint == "l2norm":
            flat = torch.nn.functional.normalize(params[0], dim=-1)
        elif self.constraint == "softmax":
            flat = params[0].softmax(dim=-1)
        else:
            flat = self._gaussian(*params)
        return flat.reshape(flat.shape[0], *self.shape)

    def _gaussian(self, mu: torch.Tensor, log_diag: torch.Tensor | None = None, off: torch.Tensor | None = None
                  ) -> torch.Tensor:
        diff = self.grid - mu[:, :, None, :]                                   # (r, G, P, D)
        if log_diag is None:
            q = diff.square().sum(-1) / self.sigma**2
        else:  # q = dᵀ Σ⁻¹ d = ‖Pᵀ d‖², Σ⁻¹ = P Pᵀ (a matmul: no per-matrix solve)
            q = (diff @ self.precision_factor(log_diag, off)).square().sum(-1)
        return (-0.5 * q).softmax(dim=-1)                                      # pdf normalised to sum 1

    def precision_factor(self, log_diag: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
        """P (r, G, D, D), lower-triangular with a positive diagonal: Σ⁻¹ = P·Pᵀ, P = I/sigma at the start."""
        d = log_diag.shape[-1]
        factor = torch.diag_embed(log_diag.exp() / self.sigma)
        lower = torch.zeros(*off.shape[:-1], d, d, dtype=off.dtype, device=off.device)
        lower[..., self.tril[0], self.tril[1]] = off
        return factor + lower

    # --- what is shown and reported ------------------------------------------------------------
    def display(self, fhat: torch.Tensor) -> torch.Tensor:
        """The map shown at layer resolution: |f̂|/‖f̂‖ for l2norm (the sign is dropped only here),
        f̂ itself for softmax and gauss. (r, *S')."""
        if self.constraint != "l2norm":
            return fhat
        flat = fhat.abs().flatten(1)
        return (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(fhat)

    def centre(self) -> torch.Tensor | None:
        """gauss: μ (R, G, D) in map cells from the map centre, else None."""
        return self.params[0].detach() if self.constraint == "gauss" else None

    def covariance(self) -> torch.Tensor | None:
        """gauss: Σ (R, G, D, D), else None."""
        if self.constraint != "gauss":
            return None
        d = self.grid.shape[1]
        if not self.learn_covariance:
            eye = torch.eye(d, dtype=self.grid.dtype, device=self.grid.device) * self.sigma**2
            return eye.expand(self.rows, self.groups, d, d).clone()
        factor = self.precision_factor(*(p.detach() for p in self.params[1:]))
        return torch.linalg.inv(factor @ factor.transpose(-1, -2))

    # --- per-row stopping ----------------------------------------------------------------------
    @torch.no_grad()
    def freeze(self, rows: torch.Tensor) -> None:
        """Keep the current parameters of `rows` from now on (their optimisation has stopped)."""
        self.frozen[rows] = True
        self.any_frozen = True
        for p, s in zip(self.params, self.saved, strict=True):
            s[rows] = p[rows]

    @torch.no_grad()
    def restore_frozen(self) -> None:
        """Undo what an optimiser step did to frozen rows (Adam moves them even with zero gradient)."""
        if self.any_frozen:
            for p, s in zip(self.params, self.saved, strict=True):
                p[self.frozen] = s[self.frozen]
