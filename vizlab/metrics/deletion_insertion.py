"""Deletion / insertion (Petsiuk et al. 2018) as a torchmetrics Metric, batched on the model's device.

Protocol (design.md): rank positions by saliency (pixels; voxels for clips; whole frames with
unit="frame"), take `steps` equal fractions 0..1; deletion replaces the top-ranked positions with
the deletion substrate (default pixel-space black), insertion reveals them over the insertion
substrate (default Gaussian blur, kernel 11, σ 5). Score = softmax probability of the target
class. AUC = trapezoid over the fraction axis, in [0, 1]. Preset "rise" = Petsiuk et al.'s
evaluation code exactly: 224 pixels per step (224 steps on 224²), deletion to zeros *of the
normalised tensor* (the mean colour, not black), insertion over blur(11, 5), softmax, trapezoid.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric

from vizlab.errors import ConfigError, InputError
from vizlab.methods.base import logits_of
from vizlab.metrics.substrates import Substrate, make_substrate
from vizlab.metrics.summaries import DELETION, INSERTION

UNITS = ("pixel", "frame")


@dataclass(frozen=True)
class DeletionInsertionConfig:
    """Every parameter of the protocol; written into results.json."""

    steps: int = 100
    pixels_per_step: int | None = None  # overrides `steps` (RISE: 224)
    unit: str = "pixel"
    deletion_substrate: str = "zeros"
    insertion_substrate: str = "blur"
    blur_klen: int = 11
    blur_sigma: float = 5.0
    batch_size: int = 16  # rows per forward; on 2 CPU threads 8-16 rows cost ~2x less per row than 64
    modes: tuple[str, ...] = ("deletion", "insertion")


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "rise": {"pixels_per_step": 224, "deletion_substrate": "normalized_zeros", "insertion_substrate": "blur",
             "blur_klen": 11, "blur_sigma": 5.0, "unit": "pixel"},
}


def position_ranks(saliency: torch.Tensor, unit: str) -> torch.Tensor:
    """(N, *S) saliency → (N, P) rank of every position (0 = most salient). Ties: lower index first.

    unit="pixel": P = number of pixels/voxels; unit="frame": P = T (frames by mean saliency).
    """
    flat = saliency.mean(dim=(2, 3)) if unit == "frame" else saliency.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def step_counts(num_positions: int, steps: int | None, pixels_per_step: int | None) -> torch.Tensor:
    """Number of perturbed positions at every step, from 0 to num_positions (inclusive)."""
    if pixels_per_step:
        n = math.ceil(num_positions / pixels_per_step)
        return torch.clamp(torch.arange(n + 1) * pixels_per_step, max=num_positions)
    fractions = torch.arange(steps + 1, dtype=torch.float64) / steps
    return torch.round(fractions * num_positions).long()


def trapezoid_auc(curves: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """(N, K) scores at (K,) fractions in [0, 1] → (N,) trapezoid area."""
    return torch.trapezoid(curves, fractions.to(curves), dim=1)


class DeletionInsertion(Metric):
    """Deletion and insertion AUC of saliency maps.

    update(x, saliency, target): x (N, C, *S) normalised input, saliency (N, *S), target (N,).
    compute() → {"deletion_auc": mean, "insertion_auc": mean} (only the enabled modes).
    Per-sample AUCs and curves are kept (`per_sample()`), and synced across DDP ranks.
    """

    full_state_update = False
    higher_is_better = None  # deletion: lower is better, insertion: higher (see `summaries`)
    name = "deletion_insertion"
    needs_model = True
    needs_masks = False
    summaries = (DELETION, INSERTION)

    def __init__(self, model: nn.Module, preset: str | None = None, deletion_substrate: Substrate | None = None,
                 insertion_substrate: Substrate | None = None, **options: Any) -> None:
        super().__init__()
        if preset is not None and preset not in PRESETS:
            raise ConfigError(f"Unknown deletion/insertion preset {preset!r}; valid: {', '.join(PRESETS)}.")
        params = {**PRESETS.get(preset or "default", {}), **options}
        params.setdefault("modes", ("deletion", "insertion"))
        params["modes"] = tuple(params["modes"])
        custom = {}
        for key, value in (("deletion_substrate", deletion_substrate), ("insertion_substrate", insertion_substrate)):
            if callable(value):
                custom[key] = value
                params[key] = getattr(value, "__name__", "custom")
            elif value is not None:
                params[key] = value
        try:
            self.config = DeletionInsertionConfig(**params)
        except TypeError as exc:
            raise ConfigError(f"Bad deletion/insertion option: {exc}. Valid: "
                              f"{sorted(DeletionInsertionConfig.__dataclass_fields__)}.") from exc
        self._validate()
        self.custom_substrates = custom
        self.model = model
        self.preset = preset
        for mode in self.config.modes:
            self.add_state(f"{mode}_auc", default=[], dist_reduce_fx="cat")
            self.add_state(f"{mode}_curve", default=[], dist_reduce_fx="cat")

    def _validate(self) -> None:
        c = self.config
        if c.pixels_per_step is None and c.steps < 1:
            raise ConfigError(f"deletion_insertion.steps must be >= 1, got {c.steps}.")
        if c.pixels_per_step is not None and c.pixels_per_step < 1:
            raise ConfigError(f"deletion_insertion.pixels_per_step must be >= 1, got {c.pixels_per_step}.")
        if c.unit not in UNITS:
            raise ConfigError(f"deletion_insertion.unit must be one of {UNITS}, got {c.unit!r}.")
        if c.batch_size < 1:
            raise ConfigError(f"deletion_insertion.batch_size must be >= 1, got {c.batch_size}.")
        bad = set(c.modes) - {"deletion", "insertion"}
        if bad or not c.modes:
            raise ConfigError(f"deletion_insertion.modes must be a non-empty subset of [deletion, insertion]; got {c.modes}.")

    def protocol(self) -> dict[str, Any]:
        """The protocol's parameters, for results.json."""
        return {"preset": self.preset, **asdict(self.config), "score": "softmax", "auc": "trapezoid"}

    # --- the computation ---------------------------------------------------------------------
    def _substrate(self, mode: str, x: torch.Tensor) -> torch.Tensor:
        key = f"{mode}_substrate"
        spec = self.custom_substrates.get(key, getattr(self.config, key))
        return make_substrate(spec, self.model, x, self.config.blur_klen, self.config.blur_sigma)

    @torch.no_grad()
    def curves(self, x: torch.Tensor, saliency: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample curves {mode: (N, K)} and the fraction axis {"fractions": (K,)}."""
        c = self.config
        if saliency.shape != (x.shape[0], *x.shape[2:]):
            raise InputError(f"Saliency shape {tuple(saliency.shape)} does not match input {tuple(x.shape)}: "
                             "expected (N, *spatial) at input resolution.")
        if c.unit == "frame" and x.dim() != 5:
            raise ConfigError("deletion_insertion.unit=frame needs clips (N, C, T, H, W).")
        target = torch.as_tensor(target, device=x.device).long().reshape(-1).expand(x.shape[0])
        ranks = position_ranks(saliency.to(x.device).float(), c.unit)  # (N, P)
        num_positions = ranks.shape[1]
        counts = step_counts(num_positions, c.steps, c.pixels_per_step).to(x.device)  # (K,)
        n, k = x.shape[0], counts.numel()
        out: dict[str, torch.Tensor] = {"fractions": counts.double() / num_positions}
        pos_shape = x.shape[2:3] if c.unit == "frame" else x.shape[2:]
        bcast = (1,) + tuple(pos_shape) + (1,) * (x.dim() - 2 - len(pos_shape))
        for mode in c.modes:
            substrate = self._substrate(mode, x)
            first, second = (substrate, x) if mode == "deletion" else (x, substrate)
            scores = torch.empty(n * k, device=x.device)
            pairs = torch.arange(n * k, device=x.device)
            for start in range(0, n * k, c.batch_size):
                idx = pairs[start:start + c.batch_size]
                sample, step = idx // k, idx % k
                hit = (ranks[sample] < counts[step, None]).view(-1, *bcast)  # (B, 1, *S) perturbed positions
                batch = torch.where(hit, first[sample], second[sample])
                probs = logits_of(self.model(batch)).float().softmax(1)
                scores[start:start + idx.numel()] = probs.gather(1, target[sample, None])[:, 0]
            out[mode] = scores.view(n, k)
        return out

    def update(self, x: torch.Tensor, saliency: torch.Tensor, target: torch.Tensor) -> None:
        curves = self.curves(x, saliency, target)
        self.last_batch = {}
        for mode in self.config.modes:
            auc = trapezoid_auc(curves[mode], curves["fractions"]).float()
            getattr(self, f"{mode}_auc").append(auc)
            getattr(self, f"{mode}_curve").append(curves[mode].float())
            self.last_batch[f"{mode}_auc"] = auc

    def evaluate(self, x: torch.Tensor, saliency: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Update the state and return this batch's per-sample AUCs {"<mode>_auc": (N,)}."""
        self.update(x, saliency, target)
        return self.last_batch

    def evaluate_batch(self, x: torch.Tensor, saliency: torch.Tensor, target: torch.Tensor,
                       masks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The explain loop's uniform call (masks are not used)."""
        return self.evaluate(x, saliency, target)

    def summary(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.compute().items()}

    def per_sample(self) -> dict[str, torch.Tensor]:
        """All per-sample AUCs and curves seen so far (after DDP sync when computed)."""
        out = {}
        for mode in self.config.modes:
            for kind in ("auc", "curve"):
                state = getattr(self, f"{mode}_{kind}")
                out[f"{mode}_{kind}"] = torch.cat(state) if isinstance(state, list) and state else state
        return out

    def compute(self) -> dict[str, torch.Tensor]:
        values = self.per_sample()
        return {f"{m}_auc": values[f"{m}_auc"].mean() if len(values[f"{m}_auc"]) else torch.tensor(float("nan"))
                for m in self.config.modes}
