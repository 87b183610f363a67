"""The extremal-perturbation family's size rule: mask step, mask smoothness σ and strongest blur
from the input size (`scale_for`), the originals' fixed sizes (`original_scale`, for
`strict_original`), and the check that warns when a configuration is too coarse for the input
(`coarse_warning`).

The originals chose step 7, σ 21 (TorchRay) or 11/23 (the video seed) and blur 20 px for
112–224-px inputs; on 48–64-px synthetic data those sizes make the smallest mask blob about as
wide as half the image, so the mask cannot outline a small object.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """Resolved mask step (px, int), mask smoothness sigma (px) and strongest blur max_blur (px)."""

    step: int
    sigma: float
    max_blur: float


def scale_for(side: int, video: bool) -> Scale:
    """The family's size rule for an input whose shorter side is `side` px.

    The originals fixed their sizes for 112–224-px inputs: TorchRay's image EP step 7, σ 21 (= 3·step),
    blur 20 at 224; the video seed step 7, σ 11 at 112 and 23 above, blur 20. Mask resolution and
    blur are scale quantities, so they scale with the input, anchored at those values:

        image:  σ = 21·side/224,                        step = max(1, round(σ/3))
        video:  σ = 11·side/112 (side ≤ 112), 23 above;  step = max(1, round(7·side/112)) up to 7
        both:   max_blur = 20·min(1, side/112)

    So 224-px images get TorchRay's (7, 21, 20), 112-px clips the seed's (7, 11, 20) and larger
    clips (7, 23, 20); a 64-px image gets (2, 6, 11.4), a 48-px clip (3, 4.71, 8.57). The learning
    rate needs no rule: with step and σ proportional to the input, every mask parameter covers the
    same share of the (full) mask, so the per-parameter gradients of the area term — and of the model
    term for objects of the same relative size — do not change with the input size.
    """
    side = int(side)
    if video:
        sigma = 11.0 * side / 112 if side <= 112 else 23.0
        step = min(7, max(1, round(7 * side / 112)))
    else:
        sigma = 21.0 * side / 224
        step = max(1, round(sigma / 3))
    return Scale(step=step, sigma=sigma, max_blur=20.0 * min(1.0, side / 112))


def original_scale(width: int, video: bool) -> Scale:
    """The originals' fixed sizes (strict_original): TorchRay (7, 21, 20); the video seed (7, 11 if
    the frame is at most 112 px wide else 23, 20)."""
    if video:
        return Scale(step=7, sigma=11.0 if width <= 112 else 23.0, max_blur=20.0)
    return Scale(step=7, sigma=21.0, max_blur=20.0)


def blob_share(sigma: float, side: int) -> float:
    """The side of the smallest mask blob (its flat top, σ px, plus the fall-off: about 2σ) as a
    share of the input side; TorchRay's 224-px default gives 0.19."""
    return 2 * sigma / max(1, side)


RESOLVABLE_SHARE = 0.3  # blobs wider than this share of the input side cannot outline objects of the data's scale


def coarse_warning(sigma: float, height: int, width: int, video: bool) -> str | None:
    """A warning text when the smallest blob (`blob_share`) is wider than RESOLVABLE_SHARE of the
    shorter input side, else None."""
    side = min(height, width)
    share = blob_share(sigma, side)
    if share <= RESOLVABLE_SHARE:
        return None
    return (f"mask sigma {sigma:g} px makes the smallest mask blob about {share:.0%} of the {side}-px input side, "
            f"too coarse to outline objects smaller than that; leave step, sigma and max_blur unset (null) to "
            f"size them from the input (sigma {scale_for(side, video).sigma:.3g} px here) or set a smaller sigma.")


ORIGINAL_CORE_SIZE = (7, 11, 11)  # the seed's STEP kernel (frames, rows, cols), chosen for 16-frame 112-px clips


def core_size_for(frames: int, side: int) -> tuple[int, int, int]:
    """STEP's core kernel (frames, rows, cols) for a clip of `frames` frames whose shorter side is
    `side` px, anchored at the seed's (7, 11, 11) for 16 frames of 112 px:

        frames: min(7, max(1, round(7·frames/16)))     rows = cols: the odd number nearest 11·side/112, in [3, 11]

    (the seed used 7 × 11 × 11 for every clip, 224-px ones included, so the rule only shrinks it; odd
    rows and cols keep a centre line, without which a small ellipsoid on linspace(−1, 1) is empty).
    8 × 48² clips get (4, 5, 5); 16 × 48² clips (7, 5, 5). The seed's kernel on an 8-frame clip has
    two temporal positions and an 11-px cross-section, about the size of the synthetic clips' object,
    which moves 12–20 px while the kernel spans 7 frames.
    """
    depth = min(ORIGINAL_CORE_SIZE[0], max(1, round(ORIGINAL_CORE_SIZE[0] * int(frames) / 16)))
    odd = 2 * round((ORIGINAL_CORE_SIZE[1] * int(side) / 112 - 1) / 2) + 1
    width = min(ORIGINAL_CORE_SIZE[1], max(3, odd))
    return (depth, width, width)
