"""Stage B: optimise one image per facet, all facets as one batch on the model's device.

Loss of facet k with image x_k (a = pooled target features, z = the penalty layer's input):

    L_k = − Σ_{j ∈ S_k} t_{k,j}·a_j(x_k)  +  λ(i)·‖z(x_k)‖₁  +  (1/C)·Σ_c NLL_{α,c}(a_c(x_k) − t_{k,c})

and the batch minimises Σ_k L_k (each facet's gradient is its own: batched = one at a time).

Pixel space (`param="pixel"`, the original's loop), per global iteration i of octave schedule step p:
1. scheduled values at p (lr, mask σ, blur σ, TV weight, λ);
2. with a canvas (octave scale > 1): every `window_step` iterations the image goes back into the
   canvas where it was taken from and a new window is cropped at a jittered offset
   (N(margin/2, margin·window), clipped);
3. every `blur_every` iterations: I ← M·blur(I) + (1 − M)·I, plus brightness every `brightness_step`;
4. forward, loss, backward; the gradient is multiplied by the centre mask M; one SGD step
   (Nesterov, momentum 0.9; the optimiser and the robust loss's α and scale persist);
5. clip to [0, 1]; every `denoise_every` iterations: I ← M·TV(I) + (1 − M)·I.
Images stay float throughout; they are quantised only when saved (bug "quantisation" restores the
original's uint8 round trips).

Fourier space (`param="fft"`): the image is a `FourierImage`, each step renders it, applies one
random pad/jitter/zoom/rotation and takes an Adam step (the Lucid recipe); the pixel-space
regularisers (mask, blur, TV, brightness, canvas) and the lr schedule do not apply, λ's does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from vizlab.errors import ConfigError
from vizlab.featvis.clustering import Facets
from vizlab.featvis.encoding import FeatureTaps, pool
from vizlab.featvis.fourier import FourierImage, random_transform
from vizlab.featvis.regularisers import (
    add_brightness,
    centre_mask,
    gaussian_blur,
    quantise,
    truncate_uint8,
    tv_bregman,
)
from vizlab.featvis.robust import AdaptiveRobustLoss
from vizlab.featvis.schedules import SCHEDULED, Octave, Step, plan_steps
from vizlab.progress import progress_bar

Param = Literal["pixel", "fft"]
PARAMS = ("pixel", "fft")
Normalize = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FourierOptions:
    """param=fft: Adam learning rate, spectrum decay, colour decorrelation and the random transform
    of each step (pad px, translation ±jitter px, zoom range `scale`, rotation ±rotate degrees)."""

    lr: float = 0.05
    decay: float = 1.0
    decorrelate: bool = True
    pad: int = 12
    jitter: int = 8
    scale: float = 0.1
    rotate: float = 10.0


@dataclass(frozen=True)
class GenerateOptions:
    """Everything of stage B besides the octaves. Defaults are the original's hard-coded values.

    save_every: snapshot period (also the last iteration) · blur_every / denoise_every: periods of
    the masked blur and TV steps · brightness: added every brightness_step iterations (of 255) ·
    tv_max_iter / tv_eps: TV-Bregman stop rule · momentum / nesterov: SGD · robust_lr: learning
    rate of the robust loss's α and scale (None: the image's, as in the original, where it had no
    effect because the loss was re-created every iteration; default 0.01: a persistent α and scale
    stepped at the image's lr, 0.5, jump about and can blow up) · sigma_reference:
    the image side the octaves' mask σ values are meant for (σ is scaled by side/sigma_reference;
    None: σ in pixels as given) · bugs: original bugs to reproduce (vizlab.featvis.original).
    """

    param: Param = "pixel"
    save_every: int = 200
    blur_every: int = 10
    denoise_every: int = 10
    brightness: float = 5.0
    tv_max_iter: int = 100
    tv_eps: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    robust_lr: float | None = 0.01
    sigma_reference: int | None = 512
    fft: FourierOptions = field(default_factory=FourierOptions)
    seed: int = 0
    progress: bool = False
    bugs: frozenset[str] = frozenset()

    def check(self) -> None:
        if self.param not in PARAMS:
            raise ConfigError(f"task.param must be one of {PARAMS}, got {self.param!r}.")
        for key in ("save_every", "blur_every", "denoise_every", "tv_max_iter"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"task.{key} must be an integer >= 1, got {value!r}.")
        if self.sigma_reference is not None and self.sigma_reference <= 0:
            raise ConfigError(f"task.sigma_reference must be null or > 0, got {self.sigma_reference!r}.")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"task.momentum must be in [0, 1), got {self.momentum!r}.")
        if self.fft.lr <= 0:
            raise ConfigError(f"task.fft.lr must be > 0, got {self.fft.lr!r}.")


@dataclass
class Generation:
    """What stage B returns (tensors on the CPU; I steps, K facets).

    images (K, 3, *S) final images in [0, 1] · snapshots: iteration → (K, 3, *S), iteration 0 = start ·
    history: "loss" (I,), "activation" (I, K) mean target-channel activation, "activation_term",
    "distance", "penalty" (I, K) the three loss terms per facet (before any broadcast factor) ·
    schedule: "iteration", "octave" (I,) and the five scheduled values (I,) · alpha, scale (K, C):
    the robust loss's final parameters · seconds: wall time of the loop.
    """

    images: torch.Tensor
    snapshots: dict[int, torch.Tensor]
    history: dict[str, torch.Tensor]
    schedule: dict[str, torch.Tensor]
    alpha: torch.Tensor
    scale: torch.Tensor
    seconds: float

    @property
    def iterations(self) -> int:
        return int(self.schedule["iteration"].numel())

    @property
    def iterations_per_second(self) -> float:
        return self.iterations / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class LossTerms:
    total: torch.Tensor        # scalar
    activation: torch.Tensor   # (K,) − Σ_j w_kj a_kj
    distance: torch.Tensor     # (K,) mean_c NLL
    penalty: torch.Tensor      # (K,) λ‖z‖₁
    mean_activation: torch.Tensor  # (K,) mean of a over S_k


def activation_weights(facets: Facets, mixed: bool = False) -> torch.Tensor:
    """(K, C) weights w of the activation term −Σ_c w_kc a_kc: t_k on S_k; `mixed` (bug "channels"):
    t_k times the number of clusters whose set holds c (the original's list-of-lists indexing)."""
    counts = facets.channels.float().sum(0, keepdim=True) if mixed else facets.channels.float()
    return facets.targets * counts


def loss_terms(features: torch.Tensor, penalty_input: torch.Tensor | None, targets: torch.Tensor,
               weights: torch.Tensor, channels: torch.Tensor, robust: AdaptiveRobustLoss, lam: float,
               broadcast: bool = False) -> LossTerms:
    """The facet losses from pooled features (K, C) and the penalty layer's input (K, ...).

    total = Σ_k (activation + penalty + distance) (fixed), or with `broadcast` (the original)
    Σ_k activation + K²·Σ_k penalty + K²·mean_{k,c} NLL = … + K²·P + K·D: the original adds its two
    scalar terms once per entry of a B×K tensor (B = K images, K channel sets) before the sum.
    """
    k = features.shape[0]
    act = -(features * weights).sum(1)
    dist = robust(features - targets).mean(1)
    pen = (lam * penalty_input.abs().flatten(1).sum(1) if penalty_input is not None
           else torch.zeros(k, device=features.device, dtype=features.dtype))
    if broadcast:
        total = act.sum() + k * k * (pen.sum() + dist.mean())
    else:
        total = act.sum() + pen.sum() + dist.sum()
    ch = channels.to(features.dtype)
    mean_act = (features * ch).sum(1) / ch.sum(1)
    return LossTerms(total, act, dist, pen, mean_act)


def zoom(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic spatial resize of (N, C, H, W) or (N, C, T, H, W), clipped to [0, 1]."""
    if x.dim() == 5:
        n, c, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        out = F.interpolate(frames, size=size, mode="bicubic", align_corners=False)
        return out.reshape(n, t, c, *size).permute(0, 2, 1, 3, 4).clamp(0, 1)
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


class Canvas:
    """The zoomed picture an octave crops its windows from (the original's `images` array)."""

    def __init__(self, images: torch.Tensor, scale: float, window: float, generator: torch.Generator) -> None:
        self.h, self.w = images.shape[-2:]
        size = (round(self.h * scale), round(self.w * scale))
        self.active = size[0] > self.h and size[1] > self.w
        self.window, self.generator = window, generator
        self.pixels = zoom(images, size) if self.active else images
        self.oy, self.ox = (size[0] - self.h) // 2, (size[1] - self.w) // 2

    def sample_offsets(self) -> tuple[int, int]:
        """(oy, ox): x first then y, each N(margin/2, margin·window) clipped to [0, margin], truncated."""
        margins = (self.pixels.shape[-1] - self.w, self.pixels.shape[-2] - self.h)
        z = torch.randn(2, generator=self.generator, dtype=torch.float64).tolist()
        ox, oy = (int(min(max(m / 2 + m * self.window * zi, 0), m)) for m, zi in zip(margins, z, strict=True))
        return oy, ox

    def crop(self, oy: int, ox: int) -> torch.Tensor:
        return self.pixels[..., oy:oy + self.h, ox:ox + self.w].clone()

    def paste(self, images: torch.Tensor, oy: int, ox: int) -> None:
        self.pixels[..., oy:oy + self.h, ox:ox + self.w] = images


class _History:
    """Per-step records, kept on the device until the end (no sync per step)."""

    def __init__(self, steps: int, k: int, device: torch.device) -> None:
        self.loss = torch.zeros(steps, device=device)
        self.terms = {name: torch.zeros(steps, k, device=device)
                      for name in ("activation", "activation_term", "distance", "penalty")}

    def record(self, t: int, terms: LossTerms) -> None:
        self.loss[t] = terms.total.detach()
        self.terms["activation"][t] = terms.mean_activation.detach()
        self.terms["activation_term"][t] = terms.activation.detach()
        self.terms["distance"][t] = terms.distance.detach()
        self.terms["penalty"][t] = terms.penalty.detach()

    def to_cpu(self) -> dict[str, torch.Tensor]:
        return {"loss": self.loss.cpu(), **{k: v.cpu() for k, v in self.terms.items()}}


def _schedule_table(steps: Sequence[Step], octaves: Sequence[Octave]) -> dict[str, torch.Tensor]:
    values = [octaves[s.octave].values(s.position, s.length) for s in steps]
    table = {key: torch.tensor([v[key] for v in values], dtype=torch.float64) for key in SCHEDULED}
    table["iteration"] = torch.tensor([s.i for s in steps])
    table["octave"] = torch.tensor([s.octave for s in steps])
    return table


def generate(taps: FeatureTaps, facets: Facets, octaves: Sequence[Octave], iterations: int,
             normalize: Normalize, options: GenerateOptions = GenerateOptions(),
             device: torch.device | str | None = None) -> Generation:
    """Run stage B for every facet at once; see the module docstring. `taps` must be probed."""
    options.check()
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ConfigError(f"task.iterations must be an integer >= 1, got {iterations!r}.")
    octaves = [Octave.from_config(o, j) for j, o in enumerate(octaves)]
    bugs = options.bugs
    steps = plan_steps(octaves, iterations, original="schedules" in bugs)
    device = torch.device(device) if device is not None else facets.targets.device
    dtype = next((p.dtype for p in taps.model.parameters() if p.is_floating_point()), torch.float32)
    k, c = facets.targets.shape
    targets = facets.targets.to(device, dtype)
    channels = facets.channels.to(device)
    weights = activation_weights(facets, mixed="channels" in bugs).to(device, dtype)
    robust = AdaptiveRobustLoss((k, c), device=device).to(dtype)
    generator = torch.Generator().manual_seed(options.seed)
    history = _History(len(steps), k, device)
    start_images = facets.images.to(device, dtype)
    if "quantisation" in bugs:
        start_images = truncate_uint8(start_images)
    snapshots = {0: start_images.cpu()}
    run = _PixelRun if options.param == "pixel" else _FourierRun
    loop = run(taps, start_images, robust, normalize, options, generator)  # the model's dtype throughout
    begin = time.perf_counter()
    with taps.attached(truncate=True):
        bar = progress_bar(steps, desc=f"featvis: {k} facets", disable=not options.progress, leave=False)
        for t, step in enumerate(bar):
            octave = octaves[step.octave]
            if t == 0 or steps[t - 1].octave != step.octave:
                loop.start_octave(octave)
            values = octave.values(step.position, step.length)

            def objective(x: torch.Tensor, values=values) -> LossTerms:
                feats, pen = taps.run(x)
                return loss_terms(pool(feats), pen, targets, weights, channels, robust, values["lambda"],
                                  broadcast="broadcast" in bugs)

            terms = loop.step(step, octave, values, objective)
            history.record(t, terms)
            last = t == len(steps) - 1
            if step.i % options.save_every == 0 or last:
                snapshots[step.i] = loop.images().cpu()
            if options.progress and (t % 25 == 0 or last):
                bar.set_postfix(loss=f"{float(terms.total):.4g}", act=f"{float(terms.mean_activation.mean()):.3g}")
    seconds = time.perf_counter() - begin
    if "optimiser" in bugs:
        robust.reset()  # what the original's next iteration would use: α and scale never leave their start
    if not torch.isfinite(history.loss).all():
        raise ConfigError("The featvis loss became NaN/Inf; lower the learning rates (task.octaves[*].start_lr, "
                          "task.fft.lr) or λ (start_lambda / end_lambda).")
    return Generation(images=loop.images().cpu(), snapshots=snapshots, history=history.to_cpu(),
                      schedule=_schedule_table(steps, octaves), alpha=robust.alpha().detach().cpu(),
                      scale=robust.scale().detach().cpu(), seconds=seconds)


class _PixelRun:
    """The original's pixel-space loop (images in [0, 1]; the optimised leaf is the normalised image)."""

    def __init__(self, taps: FeatureTaps, images: torch.Tensor, robust: AdaptiveRobustLoss, normalize: Normalize,
                 options: GenerateOptions, generator: torch.Generator) -> None:
        self.taps, self.robust, self.normalize, self.options = taps, robust, normalize, options
        self.bugs = options.bugs
        self.generator = generator
        self.img = images.clone()
        self.x = normalize(self.img).detach().requires_grad_(True)
        self.h, self.w = images.shape[-2:]
        self.canvas: Canvas | None = None
        self.optimizer = self._optimizer()
        self._mask_key: float | None = None
        self._mask = torch.ones(self.h, self.w, device=images.device, dtype=images.dtype)

    def _optimizer(self) -> torch.optim.Optimizer:
        groups = [{"params": [self.x]}, {"params": list(self.robust.parameters())}]
        return torch.optim.SGD(groups, lr=1.0, momentum=self.options.momentum, nesterov=self.options.nesterov)

    def images(self) -> torch.Tensor:
        return self.img.detach().clone()

    def start_octave(self, octave: Octave) -> None:
        self.canvas = Canvas(self.img, octave.scale, octave.window, self.generator)
        if not self.canvas.active:
            self.canvas = None
        elif "crop" not in self.bugs:  # the fix: the image is the canvas window from the start
            self.img = self.canvas.crop(self.canvas.oy, self.canvas.ox)

    def mask(self, sigma: float) -> torch.Tensor:
        ref = self.options.sigma_reference
        sigma_px = sigma * max(self.h, self.w) / ref if ref else sigma
        if sigma_px != self._mask_key:
            self._mask = centre_mask(self.h, self.w, sigma_px, self.img.device, self.img.dtype)
            self._mask_key = sigma_px
        return self._mask

    def _uint8(self, x: torch.Tensor, rounding: bool = False) -> torch.Tensor:
        if "quantisation" not in self.bugs:
            return x
        return quantise(x) if rounding else truncate_uint8(x)

    def step(self, step: Step, octave: Octave, values: dict[str, float],
             objective: Callable[[torch.Tensor], LossTerms]) -> LossTerms:
        i, opts = step.i, self.options
        canvas = self.canvas
        if canvas is not None:
            if "crop" in self.bugs:
                oy, ox = canvas.sample_offsets()
                if i % octave.window_step == 0:
                    self.img = canvas.crop(oy, ox)
            elif i % octave.window_step == 0:
                canvas.paste(self.img, canvas.oy, canvas.ox)
                canvas.oy, canvas.ox = canvas.sample_offsets()
                self.img = canvas.crop(canvas.oy, canvas.ox)
        m = self.mask(values["mask_sigma"])
        if i % opts.blur_every == 0:
            blurred = gaussian_blur(self.img, values["sigma"])
            self.img = m * blurred + (1 - m) * self.img
            if i % octave.brightness_step == 0 and i > 0:
                self.img = add_brightness(self.img, opts.brightness / 255)
            self.img = self._uint8(self.img)
        if canvas is not None and "crop" in self.bugs:
            canvas.paste(self.img, oy, ox)
        if "optimiser" in self.bugs:
            self.robust.reset()
            self.optimizer = self._optimizer()
        lr = values["lr"]
        self.optimizer.param_groups[0]["lr"] = lr
        self.optimizer.param_groups[1]["lr"] = opts.robust_lr if opts.robust_lr is not None else lr
        with torch.no_grad():
            self.x.copy_(self.normalize(self.img))
        self.optimizer.zero_grad(set_to_none=True)
        terms = objective(self.x)
        terms.total.backward()
        self.x.grad.mul_(m)
        self.optimizer.step()
        with torch.no_grad():
            img = self._uint8(self._denormalize(self.x).clamp(0, 1), rounding=True)
            if i % opts.denoise_every == 0:
                denoised = tv_bregman(img, values["denoise_weight"], opts.tv_max_iter, opts.tv_eps)
                img = self._uint8(m * denoised + (1 - m) * img)
        self.img = img
        return terms

    def _denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize` (affine per channel): recovered from normalize(0) and normalize(1)."""
        if not hasattr(self, "_affine"):
            shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
            zero = self.normalize(torch.zeros(shape, device=x.device))
            one = self.normalize(torch.ones(shape, device=x.device))
            self._affine = (zero, one - zero)
        zero, slope = self._affine
        return (x - zero) / slope


class _FourierRun:
    """param=fft: a FourierImage, one random transform per step, Adam."""

    def __init__(self, taps: FeatureTaps, images: torch.Tensor, robust: AdaptiveRobustLoss, normalize: Normalize,
                 options: GenerateOptions, generator: torch.Generator) -> None:
        fo = options.fft
        self.normalize, self.options, self.generator = normalize, options, generator
        self.image = FourierImage.from_images(images, fo.decay, fo.decorrelate)
        params = [{"params": [self.image.spectrum]}, {"params": list(robust.parameters())}]
        self.optimizer = torch.optim.Adam(params, lr=fo.lr)
        if options.robust_lr is not None:
            self.optimizer.param_groups[1]["lr"] = options.robust_lr

    def images(self) -> torch.Tensor:
        with torch.no_grad():
            return self.image().detach().clone()

    def start_octave(self, octave: Octave) -> None:
        """Octave scale, window and the pixel-space regularisers do not apply in Fourier space."""

    def step(self, step: Step, octave: Octave, values: dict[str, float],
             objective: Callable[[torch.Tensor], LossTerms]) -> LossTerms:
        fo = self.options.fft
        self.optimizer.zero_grad(set_to_none=True)
        img = self.image()
        moved = random_transform(img, self.generator, fo.pad, fo.jitter, fo.scale, fo.rotate)
        terms = objective(self.normalize(moved))
        terms.total.backward()
        self.optimizer.step()
        return terms


def target_activation(features: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """(K, C) pooled features of K images and (K, C) channel sets → (K,) mean over each set."""
    ch = channels.to(features.dtype)
    return (features * ch).sum(1) / ch.sum(1)


__all__ = ["FourierOptions", "Generation", "GenerateOptions", "LossTerms", "activation_weights", "generate",
           "loss_terms", "target_activation", "zoom"]
