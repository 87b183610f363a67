"""The terms of the extremal-perturbation energy, per mask row (all batched).

- `reward_loss`: the model term to **minimise** for each mask (the negative of TorchRay's reward):
  simple (−y_t), contrastive (−(y_t − max_{c≠t} y_c)) or log (the video seed's −log p_t);
  for the delete variant the perturbed image should lose the class, for dual both at once.
- `area_loss`: mean((sort(full mask) − r_a)²), r_a = ⌊M(1 − a)⌋ zeros then ones, over the whole
  (margin-padded) mask ("global": images, 3D-EP, STEP) or frame by frame ("per_frame": 2D-EP).
- `CoreLoss`: STEP's spatio-temporal smoothness term (ellipsoid or cylinder kernel).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from vizlab.errors import ConfigError, InputError

Variant = Literal["preserve", "delete", "dual"]
Reward = Literal["simple", "contrastive", "log"]
VARIANTS = ("preserve", "delete", "dual")
REWARDS = ("simple", "contrastive", "log")
CORE_SHAPES = ("ellipsoid", "cylinder")
CORE_COUNTS = ("share", "volume")


# --- the model term ---------------------------------------------------------------------------
def class_score(logits: torch.Tensor, target: torch.Tensor, reward: Reward, strict_original: bool = False
                ) -> torch.Tensor:
    """(K, classes) logits → (K,) score the preserve game maximises.

    simple: y_t. contrastive: y_t − max_{c≠t} y_c (strict_original: TorchRay sets y_t to −100
    before the max instead of excluding it, which only differs when every other logit is < −100).
    log: log p_t (log-softmax, stable where the seed's log(softmax) would give −inf).
    """
    picked = logits.gather(1, target[:, None])[:, 0]
    if reward == "simple":
        return picked
    if reward == "contrastive":
        fill = -100.0 if strict_original else float("-inf")
        others = logits.scatter(1, target[:, None], fill)
        return picked - others.max(dim=1).values
    return picked - torch.logsumexp(logits, dim=1)


def log_not_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log(1 − p_t), computed stably as logsumexp_{c≠t} y_c − logsumexp_c y_c."""
    others = logits.scatter(1, target[:, None], float("-inf"))
    return torch.logsumexp(others, dim=1) - torch.logsumexp(logits, dim=1)


def reward_loss(logits: torch.Tensor, target: torch.Tensor, variant: Variant, reward: Reward,
                strict_original: bool = False) -> torch.Tensor:
    """Per-mask model loss (K,) from logits of the perturbed inputs.

    logits: (K, classes) for preserve/delete, (2K, classes) for dual (preserve rows first).
    target: (K,) class per mask. Losses (to minimise):
      simple/contrastive: preserve −s, delete +s, dual −(s_pres − s_del)   (TorchRay's rewards, negated)
      log:                preserve −log p_t, delete −log(1 − p_t), dual the sum of both (video seed)
    """
    k = target.shape[0]
    if variant == "dual":
        pres, dele = logits[:k], logits[k:]
    else:
        pres = dele = logits
    if reward == "log":
        if variant == "preserve":
            return -class_score(pres, target, "log")
        if variant == "delete":
            return -log_not_target(dele, target)
        return -class_score(pres, target, "log") - log_not_target(dele, target)
    if variant == "preserve":
        return -class_score(pres, target, reward, strict_original)
    if variant == "delete":
        return class_score(dele, target, reward, strict_original)
    return -(class_score(pres, target, reward, strict_original) - class_score(dele, target, reward, strict_original))


# --- the area term ----------------------------------------------------------------------------
def reference_zeros(size: int, area: float) -> int:
    """Zeros in the reference vector of `size` elements for area a: ⌊size·(1 − a)⌋ (TorchRay's int())."""
    return int(size * (1 - area))


def area_loss(full: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """full: (K, F, M) full masks (F frames of M values); zeros: (K,) or (K, F) zero counts.

    zeros (K,): one reference over all F·M values ("global": image EP, 3D-EP, STEP) →
        mean over F·M of (sort(full) − r)².
    zeros (K, F): a reference per frame ("per_frame": 2D-EP) → mean over frames of the per-frame loss.
    Returns (K,).
    """
    k, frames, m = full.shape
    if zeros.dim() == 1:
        flat = full.reshape(k, frames * m).sort(dim=1).values
        ref = (torch.arange(frames * m, device=full.device)[None, :] >= zeros[:, None]).to(full.dtype)
        return ((flat - ref) ** 2).mean(dim=1)
    ordered = full.sort(dim=2).values
    ref = (torch.arange(m, device=full.device)[None, None, :] >= zeros[:, :, None]).to(full.dtype)
    return ((ordered - ref) ** 2).mean(dim=2).mean(dim=1)


# --- STEP's core term -------------------------------------------------------------------------
def core_kernel(size: tuple[int, int, int] = (7, 11, 11), shape: str = "ellipsoid") -> torch.Tensor:
    """Binary (1, 1, t, h, w) kernel on a linspace(−1, 1) grid per axis.

    ellipsoid: √(u² + v² + w²) ≤ 1 (311 ones for (7, 11, 11)); cylinder: √(v² + w²) ≤ 1 (567 ones).
    """
    if shape not in CORE_SHAPES:
        raise ConfigError(f"core_shape must be one of {CORE_SHAPES}, got {shape!r}.")
    axes = [torch.linspace(-1, 1, n, dtype=torch.float64) for n in size]
    u, v, w = torch.meshgrid(*axes, indexing="ij")
    dist = torch.sqrt(v**2 + w**2) if shape == "cylinder" else torch.sqrt(u**2 + v**2 + w**2)
    return (dist <= 1).float()[None, None]


def checked_core_kernel(size: tuple[int, int, int], shape: str = "ellipsoid") -> torch.Tensor:
    """`core_kernel`, or a ConfigError when it has no ones (an even small size: no grid point of
    linspace(−1, 1) lies inside, e.g. (4, 2, 2))."""
    kernel = core_kernel(size, shape)
    if float(kernel.sum()) == 0:
        raise ConfigError(f"core_size {list(size)} gives an empty {shape} kernel (no grid point of linspace(-1, 1) "
                          "lies inside it); use odd rows and cols, e.g. [3, 5, 5], or leave core_size null.")
    return kernel


def original_kernel_ones(size: tuple[int, int, int]) -> int:
    """The seed's estimate of the kernel volume, int(t·h·w·0.5236) (π/6 of the box; 443 for 7×11×11)."""
    return int(size[0] * size[1] * size[2] * 0.5236)


def core_topk(area: float, frames: int, full_shape: tuple[int, int], kernel_ones: float) -> int:
    """The "volume" count k = ⌈a·T·S_h·S_w / ones⌉: as many positions as kernels of `ones` voxels
    hold the area, as if the kernels did not overlap. With the seed's ones = 443: 65 for (a 0.1,
    T 16, S 134²) and 245 for S 260²."""
    return math.ceil(area * frames * full_shape[0] * full_shape[1] / kernel_ones)


def core_topk_share(area: float, positions: int) -> int:
    """The "share" count k = ⌈a · positions⌉ (the default): the share of kernel positions the term
    asks to be fully on equals the area. The kernels tile the mask in space (stride = kernel size)
    and slide by one frame, so a mask at its area everywhere gives c = a at every position: only
    this k gives the core term's target the area term's mean. 144 of 1440 positions for (a 0.1,
    T 16, S 134², 7×11×11), where the volume count asks for 93 (6.5 %; the seed's 65, 4.5 %) — less
    than the area — and, on 8-frame 48-px clips (S 58²), 9 of 50 (18 %; 135 of 605 with the 4×5×5
    kernel, 22 %) — more."""
    return math.ceil(round(area * positions, 4))  # round: a float32 0.1 times 1440 is 144.0000021


class CoreLoss:
    """STEP's smoothness term on full masks (K, 1, T, S_h, S_w) → (K,).

    c = conv3d(mask, K, stride (1, s_h, s_w)) / ΣK over all kernel positions; after a random
    permutation (a tie-break; `generator` makes it reproducible, one permutation per call shared
    by all rows, as in the seed) sort descending; loss = mean_{i<k}(c_i − 1)² + mean_{i≥k} c_i².
    k per row from its area: count "share" = ⌈a · positions⌉ (`core_topk_share`, default) or
    "volume" = ⌈a·T·S²/ones⌉ (`core_topk`) with ones = ΣK, or the seed's 443-style estimate
    (`strict_original=True`). k is clipped to [1, positions]; an empty "off" part counts 0.
    """

    def __init__(self, frames: int, full_shape: tuple[int, int], areas: torch.Tensor,
                 size: tuple[int, int, int] = (7, 11, 11), shape: str = "ellipsoid",
                 stride: tuple[int, int, int] | None = None, strict_original: bool = False,
                 count: str = "share", shuffle: bool = True, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> None:
        size = tuple(int(s) for s in size)
        if len(size) != 3 or min(size) < 1:
            raise ConfigError(f"core_size must be three positive integers (frames, rows, cols), got {size}.")
        self.size = size
        self.stride = tuple(stride) if stride is not None else (1, size[1], size[2])
        if frames < size[0] or full_shape[0] < size[1] or full_shape[1] < size[2]:
            raise InputError(
                f"STEP's core kernel {size} (frames, rows, cols) does not fit the {frames}-frame clip with "
                f"{full_shape[0]}×{full_shape[1]} full masks; use a clip of at least {size[0]} frames or a "
                "smaller method.core_size.")
        self.kernel = checked_core_kernel(size, shape).to(device)
        self.kernel_sum = float(self.kernel.sum())
        t_out = (frames - size[0]) // self.stride[0] + 1
        h_out = (full_shape[0] - size[1]) // self.stride[1] + 1
        w_out = (full_shape[1] - size[2]) // self.stride[2] + 1
        self.positions = t_out * h_out * w_out
        if count not in CORE_COUNTS:
            raise ConfigError(f"core_count must be one of {CORE_COUNTS}, got {count!r}.")
        if strict_original or count == "volume":
            ones = original_kernel_ones(size) if strict_original else self.kernel_sum
            topk = [core_topk(float(a), frames, full_shape, ones) for a in areas.tolist()]
        else:
            topk = [core_topk_share(float(a), self.positions) for a in areas.tolist()]
        self.topk = torch.tensor([min(max(k, 1), self.positions) for k in topk], device=device)
        self.shuffle, self.generator = shuffle, generator

    def __call__(self, full: torch.Tensor, area_index: torch.Tensor) -> torch.Tensor:
        """full: (K, 1, T, S_h, S_w); area_index: (K,) the area of each row → (K,) loss."""
        c = F.conv3d(full, self.kernel.to(full.dtype), stride=self.stride).flatten(1) / self.kernel_sum
        if self.shuffle:
            perm = torch.randperm(c.shape[1], generator=self.generator).to(c.device)
            c = c[:, perm]
        c = c.sort(dim=1, descending=True).values
        k = self.topk[area_index].to(c.device)[:, None]
        on = torch.arange(c.shape[1], device=c.device)[None, :] < k
        top = torch.where(on, (c - 1) ** 2, 0).sum(1) / k[:, 0]
        rest = torch.where(on, 0, c**2).sum(1) / (c.shape[1] - k[:, 0]).clamp_min(1)
        return top + rest
