"""A plain re-statement of extremal perturbation for the tests: one sample at a time, TorchRay's and
the video seed's formulas written out step by step (double loops for the generator weights,
nearest upsampling with F.interpolate, a pyramid built level by level, torch.optim.SGD), no code
shared with vizlab's batched implementation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def plain_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """TorchRay's imsmooth: separable Gaussian, taps ±⌈4σ⌉, zero padding. x: (B, C, H, W)."""
    width = math.ceil(float(4 * sigma))
    taps = torch.arange(-width, width + 1, dtype=torch.float32) / (
        torch.tensor(math.sqrt(2.0), dtype=torch.float32) * sigma + torch.tensor(1.19209290e-07))
    taps = torch.exp(-taps * taps)
    taps = taps / taps.sum()
    c = x.shape[1]
    y = F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(width, 0), groups=c)
    return F.conv2d(y, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, width), groups=c)


def plain_pyramid(x: torch.Tensor, levels: int = 8, kind: str = "blur", max_blur: float = 20.0) -> torch.Tensor:
    """x (B, C, H, W) → (B, L, C, H, W)."""
    out = []
    for s in torch.linspace(0, 1, levels):
        out.append(plain_blur(x, (1 - s) * max_blur) if kind == "blur" else x * s)
    return torch.stack(out, dim=1)


def plain_apply(pyramid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """pyramid (B, L, C, H, W), mask (B, 1, H, W) → (B, C, H, W), level interpolation per pixel."""
    levels = pyramid.shape[1]
    w = mask[:, None] * (levels - 1)  # (B, 1, 1, H, W)
    k = w.floor()
    w = w - k
    k = k.long().expand(-1, 1, pyramid.shape[2], -1, -1)
    y0 = torch.gather(pyramid, 1, k)
    y1 = torch.gather(pyramid, 1, torch.clamp(k + 1, max=levels - 1))
    return ((1 - w) * y0 + w * y1)[:, 0]


class PlainMaskGenerator:
    """TorchRay's MaskGenerator, written out (double loop over neighbour offsets)."""

    def __init__(self, shape, step, sigma):
        self.shape, self.step, self.sigma = shape, step, sigma
        self.margin = sigma
        self.padding = 1 + math.ceil((self.margin + sigma) / step)
        self.radius = 1 + math.ceil(sigma / step)
        self.shape_in = [math.ceil(z / step) for z in shape]
        self.shape_mid = [z + 2 * self.padding - (2 * self.radius + 1) + 1 for z in self.shape_in]
        self.shape_up = [step * z for z in self.shape_mid]
        self.shape_out = [z - step + 1 for z in self.shape_up]
        size = 2 * self.radius + 1
        self.weight = torch.zeros(1, size * size, *self.shape_out)
        step_inv = [torch.tensor(m, dtype=torch.float32) / torch.tensor(u, dtype=torch.float32)
                    for m, u in zip(self.shape_mid, self.shape_up, strict=True)]
        uy, ux = torch.meshgrid(torch.arange(self.shape_out[0], dtype=torch.float32),
                                torch.arange(self.shape_out[1], dtype=torch.float32), indexing="ij")
        for ky in range(size):
            for kx in range(size):
                iy = torch.floor(step_inv[0] * uy) + ky - self.padding
                ix = torch.floor(step_inv[1] * ux) + kx - self.padding
                delta = torch.sqrt((uy - (self.margin + step * iy)) ** 2 + (ux - (self.margin + step * ix)) ** 2)
                self.weight[0, ky * size + kx] = torch.exp(-2 * (delta / sigma - 0.5).clamp(min=0) ** 2)

    def generate(self, params, pooling="softmax", coldness=20.0):
        size = 2 * self.radius + 1
        m = F.unfold(params, (size, size), padding=(self.padding,) * 2)
        m = m.reshape(len(params), -1, *self.shape_mid)
        m = F.interpolate(m, size=self.shape_up, mode="nearest")
        m = F.pad(m, (0, -self.step + 1, 0, -self.step + 1))
        m = self.weight * m
        if pooling == "softmax":
            m = (m * F.softmax(coldness * m, dim=1)).sum(dim=1, keepdim=True)
        elif pooling == "sigmoid":
            m = torch.sigmoid(coldness * m.sum(dim=1, keepdim=True) - 3)
        else:
            m = m.sum(dim=1, keepdim=True)
        m = m.clamp(0, 1)
        c = round(self.margin)
        return m[:, :, c:c + self.shape[0], c:c + self.shape[1]], m


def plain_model_loss(logits, target, variant, reward, strict=False):
    """Per-mask loss; logits (A, K) or (2A, K) for dual (preserve rows first)."""
    def score(y):
        if reward == "simple":
            return y[:, target]
        if reward == "contrastive":
            other = y.clone()
            other[:, target] = -100 if strict else -float("inf")
            return y[:, target] - other.max(dim=1).values
        return torch.log_softmax(y, dim=1)[:, target]

    def log_not(y):
        p = torch.softmax(y.double(), dim=1)[:, target]
        return torch.log1p(-p).float()

    a = logits.shape[0] // (2 if variant == "dual" else 1)
    if reward == "log":
        if variant == "preserve":
            return -score(logits)
        if variant == "delete":
            return -log_not(logits)
        return -score(logits[:a]) - log_not(logits[a:])
    if variant == "preserve":
        return -score(logits)
    if variant == "delete":
        return score(logits)
    return -(score(logits[:a]) - score(logits[a:]))


def plain_core(full, areas, frames, size=(7, 11, 11), shape="ellipsoid", ones=None, perm=None, count="share"):
    """STEP's core loss for one sample: full (A, 1, T, S, S) → (A,). k: count "share" = ⌈a · positions⌉;
    "volume" (or `ones` given, the seed's 443) = ⌈a·T·S²/ones⌉ with ones = ΣK by default."""
    axes = [torch.linspace(-1, 1, n, dtype=torch.float64) for n in size]
    u, v, w = torch.meshgrid(*axes, indexing="ij")
    dist = torch.sqrt(v**2 + w**2) if shape == "cylinder" else torch.sqrt(u**2 + v**2 + w**2)
    kernel = (dist <= 1).float()[None, None]
    ksum = kernel.sum()
    share = ones is None and count == "share"
    ones = ksum if ones is None else ones
    c = F.conv3d(full, kernel, stride=(1, size[1], size[2])).flatten(1)
    if perm is not None:
        c = c[:, perm]
    c = c.sort(dim=1, descending=True).values
    losses = []
    for i, a in enumerate(areas):
        if share:
            k = math.ceil(round(a * c.shape[1], 4))
        else:
            k = math.ceil(a * frames * full.shape[-2] * full.shape[-1] / float(ones))
        k = min(max(k, 1), c.shape[1])
        top = ((c[i, :k] / ksum - 1) ** 2).mean()
        rest = ((c[i, k:] / ksum) ** 2).mean() if k < c.shape[1] else torch.zeros(())
        losses.append(top + rest)
    return torch.stack(losses)


def plain_extremal(model, x, target, areas, *, iters, step, sigma, lr=0.01, momentum=0.9, dampening=0.9,
                   area_weight=300.0, growth=1.0035, reward_weight=1.0, reward="simple", variant="preserve",
                   kind="blur", levels=8, max_blur=20.0, jitter=True, mode="global", core=None, stale=False,
                   strict=False):
    """One image (1, C, H, W) or one clip (1, C, T, H, W): masks (A, [T,] H, W), history (A, 2, iters).

    core: None or dict(weight, start, size, shape, ones, seed) for STEP.
    """
    video = x.dim() == 5
    frames = x.shape[2] if video else 1
    images = x[0].transpose(0, 1) if video else x  # (F, C, H, W)
    h, w = images.shape[-2:]
    pyramid = plain_pyramid(images, levels, kind, max_blur)  # (F, L, C, H, W)
    gen = PlainMaskGenerator((h, w), step, sigma)
    num = len(areas)
    params = torch.ones(num * frames, 1, *gen.shape_in, requires_grad=True)
    opt = torch.optim.SGD([params], lr=lr, momentum=momentum, dampening=dampening)
    size = gen.shape_out[0] * gen.shape_out[1]
    rng = torch.Generator().manual_seed(core["seed"]) if core else None
    lam = area_weight
    lam_core = core["weight"] if core is not None and core["start"] <= 0 else 0.0
    hist = []
    for t in range(iters):
        mask, full = gen.generate(params)  # (A·F, 1, ...)
        pyr = pyramid.repeat(num, 1, 1, 1, 1)
        if variant == "preserve":
            xs = plain_apply(pyr, mask)
        elif variant == "delete":
            xs = plain_apply(pyr, 1 - mask)
        else:
            xs = torch.cat([plain_apply(pyr, mask), plain_apply(pyr, 1 - mask)])
        if video:
            xs = xs.view(-1, frames, *xs.shape[1:]).transpose(1, 2)
        if jitter and t % 2 == 0:
            xs = torch.flip(xs, dims=(-1,))
        model_term = reward_weight * plain_model_loss(model(xs), target, variant, reward, strict)
        regs = []
        for i, a in enumerate(areas):
            f = full[i * frames:(i + 1) * frames].reshape(frames, size)
            if mode == "global":
                srt = f.reshape(-1).sort().values
                ref = torch.ones(frames * size)
                ref[:int(frames * size * (1 - a))] = 0
                regs.append(((srt - ref) ** 2).mean())
            else:
                ref = torch.ones(size)
                ref[:int(size * (1 - a))] = 0
                regs.append(torch.stack([((f[j].sort().values - ref) ** 2).mean() for j in range(frames)]).mean())
        regul = lam * torch.stack(regs)
        if core is not None and lam_core != 0:
            full_clip = full.view(num, frames, *gen.shape_out)[:, None]
            kt, kh, kw = core["size"]
            perm_size = ((frames - kt) + 1) * ((gen.shape_out[0] - kh) // kh + 1) * ((gen.shape_out[1] - kw) // kw + 1)
            perm = torch.randperm(perm_size, generator=rng)
            regul = regul + lam_core * plain_core(full_clip, areas, frames, core["size"], core["shape"],
                                                  core["ones"], perm, core.get("count", "share"))
        opt.zero_grad()
        (model_term + regul).sum().backward()
        opt.step()
        params.data = params.data.clamp(0, 1)
        hist.append(torch.stack([model_term.detach(), regul.detach()], dim=1))
        lam *= growth
        if core is not None and t + 1 == core["start"]:
            lam_core = core["weight"]
    if not stale:
        with torch.no_grad():
            mask, _ = gen.generate(params)
    masks = mask.detach().view(num, frames, h, w)
    return (masks if video else masks[:, 0]), torch.stack(hist, dim=2)
