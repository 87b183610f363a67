"""The HR-CAM refinement pipeline drawn step by step for one image (the original's `utils/plotting.pipeline`).

`pipeline_figure(steps, index)` takes the dict that `vizlab.hrcam.refine` returns and draws image `index` as
one uint8 RGB array (H, W, 3) with 12 panels: image · low CAM · low resized + ROI · high CAM · blurred ·
edges with bounds · histogram of the ROI gradient with the bounds · focal points · segmented · full segment ·
merged (refined CAM) overlay · result. Matplotlib (Agg canvas, no pyplot state) when installed, else an
OpenCV mosaic with the same panels. `draw_pipeline(steps, index, path)` writes that picture as a PNG
(atomically). In the explain loop, `method=hrcam` (stage=refined, figures=true) hands the picture to the
loop through `HRCAM.sample_figures`, which saves heatmaps/<index>_<name>_pipeline.png and logs it to W&B
as `figures/pipeline`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vizlab.errors import InputError
from vizlab.viz.overlay import add_caption, colorize, frame_strip, overlay, save_png, to_numpy_map, to_uint8_image

COLUMNS, ROWS = 4, 3
DPI = 100
PANEL_INCHES = (3.25, 3.5)  # width, height of one matplotlib panel
FIGURE_SIZE = (int(COLUMNS * PANEL_INCHES[0] * DPI), int(ROWS * PANEL_INCHES[1] * DPI))  # (width, height) px
REQUIRED = ("low", "low_resized", "edges", "roi", "bounds", "focal_points", "segmented", "full_segment",
            "merged", "result", "blurred")


def has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _np(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().float().cpu().numpy()
    return np.asarray(t, dtype=np.float32)


def _norm(a: np.ndarray) -> np.ndarray:
    span = float(a.max() - a.min())
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


def _panels(steps: Mapping[str, Any], index: int, image: Any = None) -> dict[str, Any]:
    """Numpy arrays of one image's steps plus the input photo (uint8 RGB)."""
    missing = [k for k in REQUIRED if k not in steps]
    if missing:
        raise InputError(f"pipeline figure: steps lack {missing}; pass the dict that vizlab.hrcam.refine returns.")
    n = steps["merged"].shape[0]
    if not -n <= index < n:
        raise InputError(f"pipeline figure: index {index} is out of range for a batch of {n}.")
    photo = image if image is not None else steps.get("image")
    if photo is None:
        photo = steps["result"][index]
    elif np.ndim(photo) == 4:
        photo = photo[index]
    photo = to_uint8_image(_display_image(photo))
    result = to_uint8_image(_display_image(steps["result"][index]))
    p = {k: _np(steps[k][index]) for k in REQUIRED if k not in ("result",)}
    p["high"] = _np(steps["high"][index]) if "high" in steps else p["blurred"]
    p["photo"], p["result"] = photo, result
    p["focal_points"] = p["focal_points"].astype(int)
    p["focal_points"] = p["focal_points"][(p["focal_points"] >= 0).all(1)]
    return p


def _display_image(image: Any) -> Any:
    """Raw 0-255 float images (the original's convention) are scaled to [0, 1] for display."""
    if isinstance(image, torch.Tensor) and image.is_floating_point() and float(image.max()) > 1.5:
        return image / 255.0
    return image


BACKENDS = ("auto", "matplotlib", "opencv")


def pipeline_figure(steps: Mapping[str, Any], index: int, image: Any = None, title: str | None = None,
                    backend: str = "auto") -> np.ndarray:
    """Draw image `index` of a `refine` result → uint8 RGB array (H, W, 3).

    image: the input batch (N, C, H, W) or one image, if `steps` has no "image" entry.
    backend: 'auto' (matplotlib if installed, else OpenCV), 'matplotlib' or 'opencv'.
    Matplotlib figures are `FIGURE_SIZE` pixels (width, height); OpenCV mosaics are 4×3 tiles of the image size.
    """
    if backend not in BACKENDS:
        raise InputError(f"pipeline figure: backend must be 'auto', 'matplotlib' or 'opencv'; got {backend!r}.")
    p = _panels(steps, index, image)
    if backend == "matplotlib" or (backend == "auto" and has_matplotlib()):
        return _matplotlib_array(p, title)
    return _opencv_mosaic(p, title)


def draw_pipeline(steps: Mapping[str, Any], index: int, path: str | Path, image: Any = None,
                  title: str | None = None, backend: str = "auto") -> Path:
    """`pipeline_figure(steps, index, image, title, backend)` written as one PNG at `path` (atomically:
    nothing is written if drawing fails); returns the path."""
    return save_png(path, pipeline_figure(steps, index, image, title, backend))


def _matplotlib_array(p: dict[str, Any], title: str | None) -> np.ndarray:
    """The 12 panels on a matplotlib Agg canvas → uint8 RGB (FIGURE_SIZE[1], FIGURE_SIZE[0], 3)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(FIGURE_SIZE[0] / DPI, FIGURE_SIZE[1] / DPI), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(ROWS, COLUMNS)
    lower, upper = (float(v) for v in p["bounds"])
    h, w = p["merged"].shape

    def show(ax, data, name, cmap="jet", **kw):
        ax.imshow(data, cmap=cmap, **kw)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])

    show(axes[0, 0], p["photo"], "1. image", cmap=None)
    show(axes[0, 1], p["low"], f"2. low CAM {p['low'].shape[0]}×{p['low'].shape[1]}", interpolation="nearest")
    show(axes[0, 2], p["low_resized"], "3. low resized + ROI (white)")
    axes[0, 2].contour(p["roi"].astype(float), levels=[0.5], colors="white", linewidths=1.2)
    show(axes[0, 3], _norm(p["high"]), "4. high CAM")
    show(axes[1, 0], p["blurred"], "5. blurred (5×5 box)")
    inside = (p["edges"] >= lower) & (p["edges"] <= upper)
    shade = np.dstack([p["edges"]] * 3)
    shade[inside] = 0.5 * shade[inside] + 0.5 * np.array([0.1, 0.9, 0.1])
    show(axes[1, 1], np.clip(shade, 0, 1), f"6. edges, in [{lower:.2f}, {upper:.2f}]", cmap=None)
    ax = axes[1, 2]
    roi_grad = p["edges"][p["roi"] > 0]
    ax.hist(roi_grad if roi_grad.size else p["edges"].ravel(), bins=50, color="0.4")
    for value, colour in ((lower, "tab:blue"), (upper, "tab:red")):
        ax.axvline(value, color=colour, linewidth=1.5)
    ax.set_title("7. ROI gradient, bounds", fontsize=10)
    ax.tick_params(labelsize=7)
    ax.set_yticks([])
    show(axes[1, 3], p["photo"], f"8. focal points ({len(p['focal_points'])})", cmap=None)
    if len(p["focal_points"]):
        axes[1, 3].scatter(p["focal_points"][:, 0], p["focal_points"][:, 1], s=14, c="red", marker="x")
    axes[1, 3].set_xlim(-0.5, w - 0.5)
    axes[1, 3].set_ylim(h - 0.5, -0.5)
    show(axes[2, 0], p["segmented"], "9. region growing", cmap="gray", vmin=0, vmax=1)
    show(axes[2, 1], p["full_segment"], "10. + ROI edges, holes filled", cmap="gray", vmin=0, vmax=1)
    show(axes[2, 2], overlay(p["photo"], p["merged"]), "11. merged (refined CAM)", cmap=None)
    show(axes[2, 3], p["result"], "12. result (crop)", cmap=None)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.92 if title else 0.95, wspace=0.08, hspace=0.2)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])


def _tile(image: np.ndarray, size: tuple[int, int], caption: str) -> np.ndarray:
    h, w = size
    if image.shape[:2] != (h, w):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_NEAREST)
    return add_caption(np.ascontiguousarray(image), caption)


def _opencv_mosaic(p: dict[str, Any], title: str | None) -> np.ndarray:
    size = p["merged"].shape
    lower, upper = (float(v) for v in p["bounds"])
    gray = lambda m: to_uint8_image(to_numpy_map(m))  # noqa: E731
    roi_img = colorize(p["low_resized"] if p["low_resized"].max() <= 1 else _norm(p["low_resized"]))
    contours, _ = cv2.findContours(p["roi"].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(roi_img, contours, -1, (255, 255, 255), 1)
    edges = gray(p["edges"])
    inside = (p["edges"] >= lower) & (p["edges"] <= upper)
    edges[inside] = (edges[inside] * 0.5 + np.array([12, 115, 12])).astype(np.uint8)
    hist = np.full((size[0], size[1], 3), 255, np.uint8)
    roi_grad = p["edges"][p["roi"] > 0]
    counts, _ = np.histogram(roi_grad if roi_grad.size else p["edges"], bins=min(50, size[1]), range=(0, 1))
    bar_w = size[1] / len(counts)
    for i, c in enumerate(counts):
        top = int(size[0] * (1 - c / max(counts.max(), 1)))
        cv2.rectangle(hist, (int(i * bar_w), top), (int((i + 1) * bar_w) - 1, size[0] - 1), (100, 100, 100), -1)
    for value, colour in ((lower, (31, 119, 180)), (upper, (214, 39, 40))):
        x = int(round(value * (size[1] - 1)))
        cv2.line(hist, (x, 0), (x, size[0] - 1), colour, 1)
    focal = p["photo"].copy()
    for x, y in p["focal_points"]:
        cv2.drawMarker(focal, (int(x), int(y)), (255, 0, 0), cv2.MARKER_TILTED_CROSS, 7, 1)
    tiles = [
        (p["photo"], "1. image"), (colorize(_norm(p["low"])), "2. low CAM"), (roi_img, "3. low resized + ROI"),
        (colorize(_norm(p["high"])), "4. high CAM"), (colorize(p["blurred"]), "5. blurred"),
        (edges, f"6. edges [{lower:.2f}, {upper:.2f}]"), (hist, "7. ROI gradient"), (focal, "8. focal points"),
        (gray(p["segmented"]), "9. region growing"), (gray(p["full_segment"]), "10. holes filled"),
        (overlay(p["photo"], p["merged"]), "11. merged"), (p["result"], "12. result"),
    ]
    mosaic = frame_strip([_tile(img, size, cap) for img, cap in tiles], per_row=COLUMNS)
    return add_caption(mosaic, title) if title else mosaic
