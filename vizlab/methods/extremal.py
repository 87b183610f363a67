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

from vizlab.methods.perturbation.method import PerturbationMethod
from vizlab.methods.perturbation.options import ExtremalOptions
from vizlab.methods.registry import register


@register
class ExtremalPerturbation(PerturbationMethod):
    """Image extremal perturbation, batched over images and areas. Input (N, C, H, W).

    `ExtremalPerturbation(model, ExtremalOptions(...))` or `ExtremalPerturbation(model, max_iter=100, ...)`;
    the options and their defaults are the fields of `ExtremalOptions`:
    areas: target areas (fractions of the image), optimised together (default [0.1]).
    variant: preserve | delete | dual. perturbation: blur (σ_max = max_blur px) | fade.
    reward: simple (target logit) | contrastive (target − best other logit) | log (log-probability).
    max_iter 800 · num_levels 8 · step / sigma / max_blur null = sized from the input (scale.scale_for:
    TorchRay's 7 / 21 / 20 at 224 px) · area_warmup null (= max_iter // 2) · pooling softmax · jitter True ·
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
                     "from the input (7 / 21 / 20 at 224 px); a mean-only area term for the first half of the run (`area_warmup`, "
                     "the fix of issue 17; `strict_original=true` for TorchRay's exact masks)")
    input_dims = 4
    area_mode = "global"
    options_type = ExtremalOptions
