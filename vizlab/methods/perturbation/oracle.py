"""Optimality check of the extremal-perturbation family against an oracle mask.

On data with known object masks, the *oracle* of a (sample, area) row is the object itself, grown
(dilated) or shrunk (cropped to its core) to exactly the number of "on" values the method's area
term asks for, and then **projected onto the mask generator**: the parameters whose generated full
mask is closest (least squares) to that binary target. So the oracle is a mask the optimiser could
reach, smoothed the way the generator smooths. The method's own objective (model term + area
term [+ STEP's core term] at the final iteration's weights) is evaluated on the oracle and on the
optimised mask; the optimiser has done its job on a row when

    objective(optimised) <= objective(oracle) + tolerance · max(1, |objective(oracle)|).

`optimality_check(method, x, target, objects)` runs the method (or takes its `Explanation`) and
returns an `OptimalityReport` with both objectives per row, their terms, the oracle masks and
the fraction of rows that pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from vizlab.errors import InputError
from vizlab.methods.perturbation.mask_generator import MaskGenerator
from vizlab.methods.perturbation.optimise import Objective

if TYPE_CHECKING:  # pragma: no cover
    from vizlab.methods.base import Explanation
    from vizlab.methods.perturbation.method import PerturbationMethod

DEFAULT_TOLERANCE = 0.05


def object_depth(objects: torch.Tensor) -> torch.Tensor:
    """Signed distance (px) to the object's boundary, per frame: (B, H, W) bool → (B, H, W) float.

    Inside the object: +distance to the nearest background pixel; outside: −distance to the
    nearest object pixel (Euclidean, exact, by brute force in chunks — evaluation only). Frames
    without object: −inf everywhere.
    """
    b, h, w = objects.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=objects.device), torch.arange(w, device=objects.device),
                            indexing="ij")
    grid = torch.stack([ys.flatten(), xs.flatten()], dim=1).float()  # (H·W, 2)
    grown = F.max_pool2d(objects.float()[:, None], 3, 1, 1)[:, 0].bool()          # object ⊕ 3×3
    shrunk = -F.max_pool2d(-objects.float()[:, None], 3, 1, 1)[:, 0] > 0.5       # object ⊖ 3×3
    out = torch.empty(b, h * w, device=objects.device)
    for i in range(b):
        inside = objects[i].flatten()
        if not inside.any():
            out[i] = float("-inf")
            continue
        if inside.all():
            out[i] = float("inf")
            continue
        # the nearest pixel of the other kind lies on the boundary: only boundary pixels are candidates
        edge_in = inside & ~shrunk[i].flatten()
        edge_out = grown[i].flatten() & ~inside
        out[i] = torch.where(inside, _nearest(grid, grid[edge_out]), -_nearest(grid, grid[edge_in]))
    return out.view(b, h, w)


def _nearest(points: torch.Tensor, targets: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([torch.cdist(points[i:i + chunk], targets).amin(dim=1) for i in range(0, len(points), chunk)])


def oracle_targets(objective: Objective, objects: torch.Tensor) -> torch.Tensor:
    """Binary target full masks (R, F, out_h, out_w) for every row of `objective`.

    objects: (N, F, H, W) bool object masks at input resolution (F = 1 for images). Each row gets
    its object placed in the full mask's grid (after the generator's crop margin), ranked by signed
    distance to the object's boundary, and the top `ones` values set to 1, where `ones` is the
    number of ones of the row's area reference: over the whole clip for "global" rows (every frame
    grows equally), per frame for "per_frame" rows (2D-EP).
    """
    gen = objective.generator
    n, frames = objects.shape[:2]
    crop = gen.crop
    placed = objects.new_zeros(n * frames, *gen.shape_out)
    placed[:, crop:crop + gen.shape[0], crop:crop + gen.shape[1]] = objects.reshape(n * frames, *gen.shape)
    out_h, out_w = placed.shape[-2:]
    depth = object_depth(placed)  # (N·F, out_h, out_w)
    # deterministic tie-break: prefer positions near the object's centre of mass in the same frame
    ys = torch.arange(out_h, device=depth.device, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(out_w, device=depth.device, dtype=torch.float32).view(1, 1, -1)
    weight = placed.float()
    mass = weight.sum(dim=(1, 2)).clamp_min(1)
    cy = ((weight * ys).sum(dim=(1, 2)) / mass).view(-1, 1, 1)
    cx = ((weight * xs).sum(dim=(1, 2)) / mass).view(-1, 1, 1)
    score = depth - 1e-3 * torch.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)
    score = score.view(n, frames, out_h * out_w)[objective.image_of_row.to(score.device)]  # (R, F, V)
    rows = score.shape[0]
    zeros = objective.zeros.to(score.device)
    if zeros.dim() == 1:  # one reference over the clip
        flat = score.reshape(rows, -1)
        ones = flat.shape[1] - zeros
        ranks = flat.argsort(dim=1, descending=True).argsort(dim=1)
        target = (ranks < ones[:, None]).to(objective.dtype).view(rows, frames, out_h, out_w)
    else:
        ones = score.shape[2] - zeros
        ranks = score.argsort(dim=2, descending=True).argsort(dim=2)
        target = (ranks < ones[:, :, None]).to(objective.dtype).view(rows, frames, out_h, out_w)
    return target


def fit_parameters(generator: MaskGenerator, target: torch.Tensor, steps: int = 100, lr: float = 0.1) -> torch.Tensor:
    """Parameters (B, 1, h_in, w_in) in [0, 1] whose full mask best fits target (B, 1, out_h, out_w)
    in least squares: started from the target sampled at the parameter centres, then `steps` of
    Adam (lr) with a clamp to [0, 1] after each step."""
    s, m = generator.step, generator.crop
    h_in, w_in = generator.shape_in
    centres = target[:, :, m: m + s * h_in: s, m: m + s * w_in: s]
    params = F.pad(centres, (0, w_in - centres.shape[-1], 0, h_in - centres.shape[-2])).clone()
    params.requires_grad_(True)
    opt = torch.optim.Adam([params], lr=lr)
    for _ in range(steps):
        with torch.enable_grad():
            loss = ((generator.generate(params)[1] - target) ** 2).mean(dim=(1, 2, 3)).sum()
            opt.zero_grad()
            loss.backward()
        opt.step()
        with torch.no_grad():
            params.clamp_(0, 1)
    return params.detach()


@dataclass
class OptimalityReport:
    """Per row (N, A): the method's final objective on its optimised mask and on the oracle mask.

    optimised / oracle: (N, A, 2) [ρ·model term, regulariser]; objective = their sum.
    passed: (N, A) bool, optimised ≤ oracle + tolerance·max(1, |oracle|); NaN rows (no object)
    count as neither. oracle_masks: (N, A, *S) the projected oracle image masks; oracle_params the
    parameters (N, A, F, h_in, w_in); fraction: the share of rows with an object that pass.
    """

    optimised: torch.Tensor
    oracle: torch.Tensor
    passed: torch.Tensor
    valid: torch.Tensor
    tolerance: float
    oracle_masks: torch.Tensor
    oracle_params: torch.Tensor

    @property
    def optimised_objective(self) -> torch.Tensor:
        return self.optimised.sum(-1)

    @property
    def oracle_objective(self) -> torch.Tensor:
        return self.oracle.sum(-1)

    @property
    def fraction(self) -> float:
        valid = self.valid
        return float(self.passed[valid].float().mean()) if valid.any() else float("nan")

    def summary(self) -> dict[str, float]:
        valid = self.valid
        return {"fraction": self.fraction, "tolerance": self.tolerance,
                "optimised": float(self.optimised_objective[valid].mean()),
                "oracle": float(self.oracle_objective[valid].mean())}


def oracle_for(method: PerturbationMethod, x: torch.Tensor, target: torch.Tensor, objects: torch.Tensor,
               fit_steps: int = 100) -> tuple[Objective, torch.Tensor, torch.Tensor]:
    """(objective, oracle parameters (R·F, 1, h_in, w_in), oracle image masks (R, F, H, W))."""
    objective = method.objective(x, target)
    objects = objects.bool().to(x.device)
    if x.dim() == 4:
        objects = objects[:, None]
    if objects.shape != (x.shape[0], objective.frames, *x.shape[-2:]):
        raise InputError(f"Object masks {tuple(objects.shape)} do not match the input {tuple(x.shape)}: one mask "
                         "per image (N, H, W) or per frame (N, T, H, W) at input resolution.")
    targets = oracle_targets(objective, objects)
    rows, frames = targets.shape[:2]
    params = fit_parameters(objective.generator, targets.reshape(rows * frames, 1, *targets.shape[2:]), fit_steps)
    with torch.no_grad():
        masks = objective.generator.generate(params)[0].view(rows, frames, *x.shape[-2:])
    return objective, params, masks


def optimality_check(method: PerturbationMethod, x: torch.Tensor, target: torch.Tensor | None, objects: torch.Tensor,
                     info: Explanation | None = None, tolerance: float = DEFAULT_TOLERANCE,
                     fit_steps: int = 100) -> OptimalityReport:
    """Compare the method's objective on its optimised masks with the oracle masks.

    x: (N, C, H, W) or (N, C, T, H, W) normalised input; objects: (N, H, W) or (N, T, H, W) bool.
    info: the method's Explanation on x (run here if None; it must carry extras["params"]).
    tolerance: relative slack (default 0.05), see the module docstring.
    """
    if info is None:
        info = method(x, target, return_info=True)
    t = info.target
    objective, oracle_params, oracle_masks = oracle_for(method, x, t, objects, fit_steps)
    n, a = t.shape[0], objective.num_areas
    params = info.extras["params"].reshape(n * a * objective.frames, 1, *objective.generator.shape_in)
    optimised = objective.final(params).view(n, a, 2)
    oracle = objective.final(oracle_params).view(n, a, 2)
    has_object = objects.reshape(n, -1).any(dim=1).to(optimised.device)[:, None].expand(n, a)
    slack = tolerance * oracle.sum(-1).abs().clamp_min(1)
    passed = (optimised.sum(-1) <= oracle.sum(-1) + slack) & has_object
    shape = (n, a, *x.shape[2:]) if x.dim() == 5 else (n, a, *x.shape[-2:])
    return OptimalityReport(optimised=optimised, oracle=oracle, passed=passed, valid=has_object, tolerance=tolerance,
                            oracle_masks=oracle_masks.reshape(shape),
                            oracle_params=oracle_params.view(n, a, objective.frames, *oracle_params.shape[-2:]))


def oracle_figure(image: torch.Tensor, report: OptimalityReport, optimised: torch.Tensor, index: int = 0,
                  area: int = 0, scale: int = 3):
    """The optimised mask next to the oracle mask, each captioned with its objective, as a (H', W', 3)
    uint8 RGB array — so a user can see when the optimisation failed.

    image: (3, H, W) or (3, T, H, W) in [0, 1] (sample `index`); optimised: the method's per-area masks
    (N, A, *S) (`info.extras["masks"]`); area: which area. Two caption bars per panel: the objective
    (and whether the optimised one is within the report's tolerance), then its two terms. Clips show every frame in a row (rows of 8).
    Pixels are enlarged `scale` times (nearest) so that small inputs stay readable.
    """
    import cv2
    import numpy as np

    from vizlab.viz.overlay import add_caption, clip_overlays, frame_strip, overlay, to_uint8_image

    def panel(mask: torch.Tensor, caption: str, note: str) -> np.ndarray:
        if mask.dim() == 2:
            picture = overlay(to_uint8_image(image), mask.cpu())
        else:
            picture = frame_strip(clip_overlays(image.cpu(), mask.cpu()))
        picture = cv2.resize(picture, (picture.shape[1] * scale, picture.shape[0] * scale),
                             interpolation=cv2.INTER_NEAREST)
        return add_caption(add_caption(picture, note), caption)

    opt, orc = report.optimised[index, area], report.oracle[index, area]
    verdict = "as good as the oracle" if bool(report.passed[index, area]) else "WORSE than the oracle"
    left = panel(optimised[index, area], f"optimised {float(opt.sum()):.3g}: {verdict}",
                 f"model {float(opt[0]):.3g} + reg {float(opt[1]):.3g}")
    right = panel(report.oracle_masks[index, area], f"oracle {float(orc.sum()):.3g}",
                  f"model {float(orc[0]):.3g} + reg {float(orc[1]):.3g}")
    gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)
