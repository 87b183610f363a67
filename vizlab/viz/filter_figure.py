"""A signed layer-resolution filter (L2-CAF's f̂) drawn as a picture: blue < 0 < red ('bwr', as the
L2-CAF originals), symmetric colour scale, one panel per frame for clips, values written in the
cells of small maps."""

from __future__ import annotations

import numpy as np
import torch

from vizlab.errors import InputError

DPI = 100
MAX_FRAMES = 16      # panels drawn for a clip filter (the first ones)
ANNOTATE_UP_TO = 10  # write the values into the cells when both sides are at most this


def draw_filter(filt: torch.Tensor | np.ndarray, title: str | None = None, panel: int = 240) -> np.ndarray:
    """filt: (H', W') or (T', H', W') → uint8 RGB (height, width, 3); `panel` px per frame panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = filt.detach().float().cpu().numpy() if isinstance(filt, torch.Tensor) else np.asarray(filt, float)
    if values.ndim not in (2, 3):
        raise InputError(f"draw_filter needs an (H', W') or (T', H', W') filter; got shape {values.shape}.")
    frames = values[None] if values.ndim == 2 else values[:MAX_FRAMES]
    scale = float(np.abs(values).max()) or 1.0
    n = frames.shape[0]
    fig = Figure(figsize=((panel * n + 110) / DPI, (panel + 50) / DPI), dpi=DPI, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    image = None
    for k, (ax, frame) in enumerate(zip(axes, frames, strict=True)):
        image = ax.imshow(frame, cmap="bwr", vmin=-scale, vmax=scale, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if n > 1:
            ax.set_title(f"t={k}", fontsize=9)
        if max(frame.shape) <= ANNOTATE_UP_TO:
            for (i, j), v in np.ndenumerate(frame):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=list(axes), shrink=0.9)
    if title:
        fig.suptitle(title, fontsize=10)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])
