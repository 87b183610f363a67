"""Pictures of a feature-visualisation run (uint8 RGB arrays; the task saves them as PNGs).

- `iteration_strip`: one row per cluster — its nearest real member, then the image at each saved
  iteration (the paper's figure: a real image, then iterations 200 … 1000);
- `embedding_figure`: the 2-D embedding of the image set, points coloured by cluster, cluster
  centres, and thumbnails of the images (Matplotlib, Agg canvas);
- `curves_figure`: loss terms and the mean target-channel activation per cluster per iteration.
Clips are shown by their middle frame in the strip and the embedding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from vizlab.featvis.clustering import Facets
from vizlab.featvis.optimise import Generation
from vizlab.viz.curves import draw_history
from vizlab.viz.overlay import add_caption, frame_strip, to_uint8_image

DPI = 100
CLUSTER_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf")


def still(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) image or (3, T, H, W) clip in [0, 1] → (H, W, 3) uint8 (a clip's middle frame)."""
    if image.dim() == 4:
        image = image[:, image.shape[1] // 2]
    return to_uint8_image(image)


def clip_frames(clip: torch.Tensor) -> list[np.ndarray]:
    """(3, T, H, W) in [0, 1] → T uint8 frames."""
    return [to_uint8_image(clip[:, t]) for t in range(clip.shape[1])]


def pick_iterations(iterations: Sequence[int], columns: int) -> list[int]:
    """At most `columns` of the saved iterations (> 0), evenly spread, always with the last."""
    saved = sorted(i for i in iterations if i > 0)
    if len(saved) <= columns:
        return saved
    idx = np.linspace(0, len(saved) - 1, columns).round().astype(int)
    return [saved[i] for i in sorted(set(idx.tolist()))]


def _fit(tile: np.ndarray, side: int) -> np.ndarray:
    import cv2

    if tile.shape[0] == side and tile.shape[1] == side:
        return tile
    interp = cv2.INTER_AREA if tile.shape[0] > side else cv2.INTER_NEAREST
    return cv2.resize(tile, (side, side), interpolation=interp)


def iteration_strip(facets: Facets, generation: Generation, real_images: torch.Tensor, columns: int = 8,
                    tile: int = 160) -> np.ndarray:
    """Rows = clusters: [nearest member | start (iteration 0) | saved iterations …], captioned."""
    iterations = pick_iterations(generation.snapshots, columns)
    tiles = []
    for k in range(facets.clusters):
        nearest = int(facets.members[k][0])
        row = [add_caption(_fit(still(real_images[nearest]), tile), f"k{k}: {facets.names[nearest]}"[:24])]
        row.append(add_caption(_fit(still(generation.snapshots[0][k]), tile), "start"))
        row += [add_caption(_fit(still(generation.snapshots[i][k]), tile), f"iteration {i}") for i in iterations]
        tiles += row
    return frame_strip(tiles, per_row=len(iterations) + 2, gap=3)


def embedding_figure(facets: Facets, thumbnails: torch.Tensor, max_thumbnails: int = 60, title: str | None = None,
                     size: tuple[int, int] = (900, 720)) -> np.ndarray:
    """The 2-D embedding: points coloured by k-means cluster, centres as black crosses, thumbnails
    (framed in their cluster's colour) of at most `max_thumbnails` images (each cluster's nearest
    images first)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    points, labels = facets.embedding, facets.labels
    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.subplots()
    colours = [CLUSTER_COLOURS[k % len(CLUSTER_COLOURS)] for k in labels]
    ax.scatter(points[:, 0], points[:, 1], c=colours, s=40, edgecolors="black", linewidths=0.5, zorder=2)
    ax.scatter(facets.centres[:, 0], facets.centres[:, 1], c="black", marker="X", s=120, zorder=3)
    order = np.argsort(facets.distances.min(0), kind="stable")[:max_thumbnails]
    span = np.ptp(points, axis=0).max() if len(points) > 1 else 1.0
    zoom = min(0.5, 48 / max(1, thumbnails.shape[-1])) if span > 0 else 0.3
    for n in order:
        thumb = still(thumbnails[n])
        box = OffsetImage(thumb, zoom=zoom)
        ab = AnnotationBbox(box, points[n], frameon=True, pad=0.15, zorder=4,
                            bboxprops={"edgecolor": CLUSTER_COLOURS[labels[n] % len(CLUSTER_COLOURS)], "linewidth": 2})
        ax.add_artist(ab)
    for k, (x, y) in enumerate(facets.centres):
        ax.annotate(f"cluster {k}", (x, y), textcoords="offset points", xytext=(6, -14), fontsize=9, zorder=5)
    margin = 0.15 * (span or 1.0)
    ax.set_xlim(points[:, 0].min() - margin, points[:, 0].max() + margin)
    ax.set_ylim(points[:, 1].min() - margin, points[:, 1].max() + margin)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])


def curves_figure(history: Mapping[str, torch.Tensor], title: str | None = None) -> np.ndarray:
    """Per cluster: mean target activation and the three loss terms per iteration."""
    terms = ("activation", "activation_term", "distance", "penalty")
    stacked = torch.stack([history[t] for t in terms], 0).permute(2, 0, 1)   # (K, 4, I)
    labels = [f"cluster {k}" for k in range(stacked.shape[0])]
    names = ("mean target activation", "activation term", "distance (NLL)", "L1 penalty")
    return draw_history(stacked, labels, title, terms=names, size=(1200, 300))
