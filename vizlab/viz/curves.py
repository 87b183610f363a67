"""Optimisation curves drawn as a picture: the model term and the regulariser of an optimised mask
per iteration, one line per target area (extremal perturbation, 2D-EP, 3D-EP, STEP)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vizlab.errors import InputError

DPI = 100


def draw_history(history: torch.Tensor | np.ndarray, labels: Sequence[str], title: str | None = None,
                 terms: Sequence[str] = ("model term", "regulariser"), size: tuple[int, int] = (720, 280)
                 ) -> np.ndarray:
    """history: (A, K, iterations), K = len(terms) curves per line (NaN after an early stop) →
    uint8 RGB (height, width, 3) with one panel per term and one line per label (A of them).

    size: (width, height) in pixels. Drawn with Matplotlib's Agg canvas (no pyplot state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = history.detach().float().cpu().numpy() if isinstance(history, torch.Tensor) else np.asarray(history)
    if values.ndim != 3 or values.shape[0] != len(labels) or values.shape[1] != len(terms):
        raise InputError(f"draw_history needs ({len(labels)}, {len(terms)}, iterations) curves for labels "
                         f"{list(labels)} and terms {list(terms)}; got shape {values.shape}.")
    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(terms), squeeze=False)[0]
    steps = np.arange(values.shape[2])
    for k, (ax, term) in enumerate(zip(axes, terms, strict=True)):
        for a, label in enumerate(labels):
            ax.plot(steps, values[a, k], linewidth=1.2, label=label)
        ax.set_title(term, fontsize=10)
        ax.set_xlabel("iteration", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    if len(labels) > 1:
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])
