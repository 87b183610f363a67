"""Extremal perturbation for images (Fong, Patrick & Vedaldi, ICCV 2019; TorchRay v1.0.0.2).

Finds, for each requested area a, the smooth mask m of about a·H·W pixels whose preserved
region (variant "preserve"; "delete" removes it, "dual" does both) maximises the model's
evidence for the target class, by SGD on the mask parameters of TorchRay's MaskGenerator:

    minimise  −reward(model(perturb(x, m)))  +  λ_t · mean((sort(full mask) − r_a)²),
    λ_t = 300 · 1.0035^t,  800 iterations, lr 0.01, momentum = dampening = 0.9, jitter on even t.

Same semantics as TorchRay's `extremal_perturbation`, but N images × A areas are optimised as
one batch (one forward/backward of N·A perturbed images per iteration) instead of one image per
call, and the mask generator runs as a fused, blocked autograd function.

Departures (each switchable back with `strict_original=True`):
  - the returned masks are those of the final parameters; TorchRay returns the masks of the last
    forward pass, one optimiser step stale;
  - the contrastive reward excludes the target from the max; TorchRay sets it to −100 first.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from vizlab.methods.perturbation.method import PerturbationMethod
from vizlab.methods.registry import register


@register
class ExtremalPerturbation(PerturbationMethod):
    """Image extremal perturbation, batched over images and areas. Input (N, C, H, W).

    areas: target areas (fractions of the image), optimised together (default [0.1]).
    variant: preserve | delete | dual. perturbation: blur (σ_max = max_blur px) | fade.
    reward: simple (target logit) | contrastive (target − best other logit) | log (log-probability).
    max_iter 800 · num_levels 8 · step / sigma / max_blur null = sized from the input (scale.scale_for:
    TorchRay's 7 / 21 / 20 at 224 px) · area_warmup 100 · pooling softmax · jitter True ·
    lr 0.01 · momentum 0.9 · dampening 0.9 · area_weight 300 · area_growth 1.0035 · reward_weight 1.
    smooth: Gaussian smoothing of the result with σ = smooth·min(H, W) (TorchRay's, default 0).
    early_stop / patience / tol: per-mask early stopping (off by default).
    progress: tqdm bar. batch_size: images per optimisation (None = all at once).
    Saliency = mean of the per-area masks; see PerturbationMethod for the extras.
    """

    name = "extremal"
    summary = ("the smooth mask of each target area a that keeps the class when only it is left sharp (preserve; "
               "also delete, dual), optimised for all images × areas in one batch")
    defaults_note = ("TorchRay's: 800 iterations, λ = 300·1.0035^t, simple reward, blur; step / σ / max blur sized "
                     "from the input (7 / 21 / 20 at 224 px); `area_warmup` 100 iterations of a mean-only area term "
                     "(the fix of issue 17; `strict_original=true` for TorchRay's exact masks)")
    input_dims = 4
    area_mode = "global"

    def __init__(self, model: nn.Module, areas: float | Sequence[float] = (0.1,), variant: str = "preserve",
                 perturbation: str = "blur", reward: str = "simple", max_iter: int = 800, num_levels: int = 8,
                 max_blur: float | None = None, step: int | None = None, sigma: float | None = None, pooling: str = "softmax",
                 jitter: bool = True, lr: float = 0.01, momentum: float = 0.9, dampening: float = 0.9,
                 area_weight: float = 300.0, area_growth: float = 1.0035, reward_weight: float = 1.0,
                 area_warmup: int = 100, smooth: float = 0.0, early_stop: bool = False, patience: int = 50, tol: float = 1e-4,
                 strict_original: bool = False, progress: bool = True, batch_size: int | None = None) -> None:
        super().__init__(model, areas=areas, variant=variant, perturbation=perturbation, reward=reward,
                         max_iter=max_iter, num_levels=num_levels, max_blur=max_blur, step=step, sigma=sigma,
                         pooling=pooling, jitter=jitter, lr=lr, momentum=momentum, dampening=dampening,
                         area_weight=area_weight, area_growth=area_growth, reward_weight=reward_weight,
                         area_warmup=area_warmup, smooth=smooth, early_stop=early_stop, patience=patience, tol=tol,
                         strict_original=strict_original, progress=progress, batch_size=batch_size)
