"""The pyramid figure: one row per level (the class on top), each node's tube as a thumbnail.

A thumbnail is the node's tube overlaid on the frame where the tube peaks (the image itself for
2-D models), captioned with the node's kernel, its number of children and, for clips, the frame.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from vizlab.pyramid.core import PyramidResult
from vizlab.viz.overlay import add_caption, overlay, to_uint8_image

GAP = 4
LABEL_WIDTH = 150
CAPTION = 16


def figure_nodes(result: PyramidResult, clip: int, per_level: int | None = 8) -> list[list[int]]:
    """Node ids of `tree(clip)` with a tube, per level (levels 0..D-1), strongest first, at most
    `per_level` per level (None: all)."""
    tree = result.tree(clip)
    rows: list[list[int]] = []
    for d in range(len(result.low_tubes)):
        level = [n for n in tree.nodes if n.level == d and result.has_tube(clip, n.id)]
        level.sort(key=lambda n: (-(n.relative or 0.0), n.key))
        if level:
            rows.append([n.id for n in level[:per_level]])
    return rows


def peak_frame(tube: torch.Tensor) -> int:
    """The frame of a (T, H, W) tube that holds its maximum."""
    return int(tube.flatten(1).amax(1).argmax())


def thumbnail(image: torch.Tensor, tube: torch.Tensor, size: int) -> tuple[np.ndarray, int | None]:
    """(size, size, 3) overlay of `tube` on `image` ((C, H, W) or (C, T, H, W) in [0, 1]) and the frame used."""
    frame = None
    if tube.dim() == 3:
        frame = peak_frame(tube)
        picture, sal = image[:, frame], tube[frame]
    else:
        picture, sal = image, tube
    over = overlay(to_uint8_image(picture.cpu()), sal.cpu())
    return cv2.resize(over, (size, size), interpolation=cv2.INTER_AREA), frame


def pyramid_figure(result: PyramidResult, clip: int, image: torch.Tensor, per_level: int | None = 8,
                   size: int = 96, tubes: dict[int, torch.Tensor] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB: levels as rows, up to `per_level` tubes per level as thumbnails.
    image: the clip (C, T, H, W) or image (C, H, W) in [0, 1]; tubes: node id → tube, if already computed."""
    tree = result.tree(clip)
    rows = figure_nodes(result, clip, per_level)
    width = LABEL_WIDTH + max([len(r) for r in rows] + [1]) * (size + GAP) + GAP
    row_height = size + CAPTION + GAP
    canvas = np.full((max(1, len(rows)) * row_height + GAP, width, 3), 255, np.uint8)
    for i, ids in enumerate(rows):
        top = GAP + i * row_height
        level = tree.nodes[ids[0]].level
        layers = sorted({tree.nodes[j].layer for j in ids})
        label = "class" if level == 0 else f"level {level}"
        cv2.putText(canvas, label, (4, top + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for k, name in enumerate(layers[:4]):
            cv2.putText(canvas, name[-22:], (4, top + 32 + 13 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (70, 70, 70), 1,
                        cv2.LINE_AA)
        row_tubes = [tubes[j] for j in ids] if tubes is not None and all(j in tubes for j in ids) else \
            result.tubes(clip, ids)
        for j, (node_id, tube) in enumerate(zip(ids, row_tubes, strict=True)):
            left = LABEL_WIDTH + j * (size + GAP)
            thumb, frame = thumbnail(image, tube, size)
            canvas[top:top + size, left:left + size] = thumb
            node = tree.nodes[node_id]
            text = f"k{node.kernel} ({len(tree.children(node_id))})" + ("" if frame is None else f" t{frame}")
            cv2.putText(canvas, text, (left + 2, top + size + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1,
                        cv2.LINE_AA)
    name = tree.meta.get("target_name", tree.target)
    title = (f"class {tree.target} {name}: theta {result.settings['threshold']:g}, depth {result.settings['depth']}"
             f"{', strict' if result.settings['strict_original'] else ''}")
    return add_caption(canvas, title)
