"""Input-gradient methods: Gradients, Gradients×Input, Integrated Gradients, SmoothGrad.

All back-propagate the target **logit** to the input, in batches of `batch_size` rows on the
model's device. The signed input-shaped attribution is kept as `raw`; the saliency map applies
`polarity` element-wise, averages over channels and divides by the per-sample 99.9th
percentile (clipped to [0, 1]) — the seed's display rule with its sign bug fixed: "both" keeps
negative evidence as |a| instead of dropping it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vizlab.errors import ConfigError
from vizlab.methods.base import (
    AttributionMethod,
    Explanation,
    Target,
    logits_of,
    per_sample_targets,
    percentile_scale,
    resolve_target,
    target_score,
)
from vizlab.methods.registry import register
from vizlab.validation import check_number

Polarity = Literal["positive", "negative", "both"]
POLARITIES = ("positive", "negative", "both")


def apply_polarity(attr: torch.Tensor, polarity: Polarity) -> torch.Tensor:
    """positive → max(a, 0); negative → max(−a, 0); both → |a|."""
    if polarity == "positive":
        return attr.clamp_min(0)
    if polarity == "negative":
        return (-attr).clamp_min(0)
    return attr.abs()


def input_gradients(model: nn.Module, inputs: torch.Tensor, targets: Target,
                    batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """∂ logit_target / ∂ input for every row of `inputs` (M, ...), in chunks of `batch_size`.

    targets: (M,) tensor, one int, or None (each row's predicted class, from the same pass).
    Returns (gradients like inputs, logits (M, K), targets (M,)).
    """
    per_row = isinstance(targets, torch.Tensor) and targets.numel() > 1
    grads, logits, chosen = [], [], []
    with torch.enable_grad():
        for start in range(0, inputs.shape[0], batch_size):
            chunk = inputs[start:start + batch_size].detach().requires_grad_(True)
            out = logits_of(model(chunk))
            t = resolve_target(targets[start:start + batch_size] if per_row else targets, out)
            (g,) = torch.autograd.grad(target_score(out, t), chunk)
            grads.append(g)
            logits.append(out.detach())
            chosen.append(t)
    return torch.cat(grads), torch.cat(logits), torch.cat(chosen)


class _GradientMethod(AttributionMethod):
    """Shared options and map construction."""

    family = "gradient"

    def __init__(self, model: nn.Module, polarity: Polarity = "both", batch_size: int = 32,
                 percentile: float = 99.9) -> None:
        super().__init__(model)
        if polarity not in POLARITIES:
            raise ConfigError(f"polarity must be one of {POLARITIES}, got {polarity!r}.")
        check_number("batch_size", batch_size, low=1, integer=True)
        check_number("percentile", percentile, low=0, high=100, low_open=True)
        self.polarity, self.batch_size, self.percentile = polarity, batch_size, percentile

    def to_map(self, attr: torch.Tensor, polarity: Polarity | None = None) -> torch.Tensor:
        """(N, C, *S) attribution → (N, *S) map in [0, 1]."""
        per_pixel = apply_polarity(attr, polarity or self.polarity).mean(1)
        return percentile_scale(per_pixel, self.percentile)

    def clean_forward(self, x: torch.Tensor, target: Target) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            logits = logits_of(self.model(x))
        return logits, resolve_target(target, logits)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(polarity={self.polarity!r})"


@register
class Gradients(_GradientMethod):
    """Vanilla gradients (Simonyan et al. 2014): ∂y_t/∂x. One forward + backward per sample."""

    name = "gradients"
    summary = "∂y_t/∂x"
    defaults_note = "`polarity=both` shows |g| (the seed clipped negatives away even in \"both\")"
    multiply_by_input = False

    def explain(self, x: torch.Tensor, target: Target) -> Explanation:
        grads, logits, t = input_gradients(self.model, x, per_sample_targets(target, x), self.batch_size)
        attr = grads * x if self.multiply_by_input else grads
        return Explanation(self.to_map(attr), attr, t, logits)


@register
class GradientsXInput(Gradients):
    """Gradients × Input (Shrikumar et al. 2016): x ⊙ ∂y_t/∂x (x in normalised space)."""

    name = "grad_x_input"
    summary = "x ⊙ ∂y_t/∂x"
    defaults_note = "as `gradients`"
    multiply_by_input = True


def riemann_alphas(steps: int, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(alphas, weights) of a Riemann rule on [0, 1]; weights sum to 1."""
    i = torch.arange(steps, dtype=torch.float64)
    if rule == "left":
        return i / steps, torch.full((steps,), 1 / steps, dtype=torch.float64)
    if rule == "right":
        return (i + 1) / steps, torch.full((steps,), 1 / steps, dtype=torch.float64)
    if rule == "middle":
        return (i + 0.5) / steps, torch.full((steps,), 1 / steps, dtype=torch.float64)
    if rule == "trapezoid":
        if steps < 2:
            raise ConfigError("The trapezoid rule needs steps >= 2.")
        w = torch.full((steps,), 1 / (steps - 1), dtype=torch.float64)
        w[0] = w[-1] = 0.5 / (steps - 1)
        return i / (steps - 1), w
    raise ConfigError(f"rule must be one of left, right, middle, trapezoid; got {rule!r}.")


BaselineSpec = str | float | torch.Tensor


def make_baseline(model: nn.Module, x: torch.Tensor, baseline: BaselineSpec) -> torch.Tensor:
    """Baseline like x: "black" = normalised black (−mean/std of the model's normalisation;
    zeros for a plain module without it), "zeros", a float, or a tensor broadcastable to x."""
    if isinstance(baseline, torch.Tensor):
        return baseline.to(x).expand_as(x)
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    if baseline == "zeros":
        return torch.zeros_like(x)
    if baseline == "black":
        if hasattr(model, "normalize"):
            return model.normalize(torch.zeros_like(x))
        return torch.zeros_like(x)
    raise ConfigError(f"baseline must be 'black', 'zeros', a number or a tensor; got {baseline!r}.")


@register
class IntegratedGradients(_GradientMethod):
    """Integrated Gradients (Sundararajan et al. 2017).

    IG = (x − x0) ⊙ Σ_i w_i ∂y_t/∂x (x0 + α_i (x − x0)), target **logit** y_t.
    Defaults follow the video perturbation seed: 25 steps, left Riemann rule (α = i/25, α = 1
    excluded), baseline = normalised black — computed from the *model's own* normalisation (the
    seed hard-coded Kinetics statistics, wrong for TSM). `rule="trapezoid"` with more steps
    tightens completeness; `extras["delta"]` reports Σ IG − (y_t(x) − y_t(x0)) per sample.
    """

    name = "integrated_gradients"
    summary = "(x − x0) ⊙ Σ_i w_i ∂y_t/∂x(x0 + α_i(x − x0))"
    defaults_note = ("25 steps, left Riemann rule (the seed's), baseline = normalised black *of the model's own "
                     "normalisation* (the seed hard-coded Kinetics statistics); `extras[\"delta\"]` = completeness gap")

    def __init__(self, model: nn.Module, steps: int = 25, rule: str = "left", baseline: BaselineSpec = "black",
                 polarity: Polarity = "both", batch_size: int = 32, percentile: float = 99.9) -> None:
        super().__init__(model, polarity, batch_size, percentile)
        check_number("steps", steps, low=1, integer=True)
        riemann_alphas(steps, rule)  # validates the rule early
        self.steps, self.rule, self.baseline = steps, rule, baseline

    def explain(self, x: torch.Tensor, target: Target) -> Explanation:
        n = x.shape[0]
        x0 = make_baseline(self.model, x, self.baseline)
        alphas, weights = (v.to(x.dtype).to(x.device) for v in riemann_alphas(self.steps, self.rule))
        with torch.no_grad():
            pair = logits_of(self.model(torch.cat([x, x0])))
        logits, base_logits = pair[:n], pair[n:]
        t = resolve_target(target, logits)
        shape = (-1, 1) + (1,) * (x.dim() - 1)
        path = (x0[None] + alphas.view(shape) * (x - x0)[None]).flatten(0, 1)  # (steps*N, ...)
        grads, _, _ = input_gradients(self.model, path, t.repeat(self.steps), self.batch_size)
        avg = (grads.view(self.steps, *x.shape) * weights.view(shape)).sum(0)
        attr = (x - x0) * avg
        gap = (logits - base_logits).gather(1, t[:, None])[:, 0]
        delta = attr.flatten(1).sum(1) - gap
        return Explanation(self.to_map(attr), attr, t, logits, {"delta": delta.detach()})


@register
class SmoothGrad(_GradientMethod):
    """SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies of x.

    n_samples = 25 draws of Gaussian noise with σ = noise_level · (max x − min x) per sample
    (seed defaults). variant: "mean" (signed mean gradient), "square" (mean g², the seed CLI's
    choice, default) or "variance" (E[g²] − E[g]²). `seed` fixes the noise for reproducibility.
    """

    name = "smoothgrad"
    summary = "gradients over 25 noisy copies, σ = 0.15·(max − min)"
    defaults_note = "`variant=square` (the seed CLI's), seeded noise"

    def __init__(self, model: nn.Module, n_samples: int = 25, noise_level: float = 0.15,
                 variant: str = "square", polarity: Polarity = "both", batch_size: int = 32,
                 percentile: float = 99.9, seed: int | None = 0) -> None:
        super().__init__(model, polarity, batch_size, percentile)
        check_number("n_samples", n_samples, low=1, integer=True)
        check_number("noise_level", noise_level, low=0)
        check_number("seed", seed, integer=True, optional=True)
        if variant not in ("mean", "square", "variance"):
            raise ConfigError(f"variant must be 'mean', 'square' or 'variance', got {variant!r}.")
        self.n_samples, self.noise_level, self.variant, self.seed = n_samples, noise_level, variant, seed

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator(device=x.device)
        if self.seed is None:
            gen.seed()
        else:
            gen.manual_seed(self.seed)
        flat = x.flatten(1)
        sigma = self.noise_level * (flat.max(1).values - flat.min(1).values)
        eps = torch.randn((self.n_samples, *x.shape), generator=gen, device=x.device, dtype=x.dtype)
        return eps * sigma.view(1, -1, *([1] * (x.dim() - 1)))

    def explain(self, x: torch.Tensor, target: Target) -> Explanation:
        logits, t = self.clean_forward(x, target)
        noisy = (x[None] + self.noise(x)).flatten(0, 1)
        grads, _, _ = input_gradients(self.model, noisy, t.repeat(self.n_samples), self.batch_size)
        grads = grads.view(self.n_samples, *x.shape)
        mean = grads.mean(0)
        if self.variant == "mean":
            attr = mean
        else:
            attr = (grads**2).mean(0)
            if self.variant == "variance":
                attr = attr - mean**2
        return Explanation(self.to_map(attr), attr, t, logits)

