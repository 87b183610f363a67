"""One sample's pyramid files (what task=pyramid writes), under `root/pyramid/<stem>/`:

    class_dependency_graph.json   the nested tree, the original's layout
    graph.json                    the flat nodes / links / levels form (nodes with a saved tube name it)
    graph.html                    the self-contained graph page (vizlab.pyramid.html)
    pyramid.png                   the pyramid figure (vizlab.pyramid.figure)
    tubes/node_<id>_layer_<d>_kernel_<key>_num_kernels_<n>{_strip.png,.gif}   clips: a frame strip and a GIF per tube
    tubes/node_<id>_layer_<d>_kernel_<key>_num_kernels_<n>.png                images: the overlay
(the tube names follow the original's `layer_<d>_kernel_<k>_num_kernels_<n>` folders). Tubes are saved
for the class and the `max_tubes` strongest nodes of every other level (None: every node with children).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import torch

from vizlab.io import write_bytes_atomic, write_json_atomic
from vizlab.pyramid.core import PyramidResult
from vizlab.pyramid.figure import figure_nodes, pyramid_figure, thumbnail
from vizlab.pyramid.html import graph_page
from vizlab.pyramid.tree import Node
from vizlab.viz.overlay import add_caption, clip_overlays, frame_strip, overlay, save_gif, save_png

THUMBNAIL = 72  # px, the graph page's tube pictures


def encode_jpeg(image, quality: int = 88) -> bytes:
    """RGB uint8 → JPEG bytes (the graph page's thumbnails: a fifth of a PNG's size)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV failure
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def tube_name(node: Node, children: int) -> str:
    """node_<id>_layer_<d>_kernel_<key>_num_kernels_<n> (the id keeps a kernel that sits under two
    parents from overwriting itself, as it did in the original)."""
    return f"node_{node.id:04d}_layer_{node.level}_kernel_{node.key}_num_kernels_{children}"


def write_pyramid(root: Path, stem: str, result: PyramidResult, clip: int, image: torch.Tensor,
                  max_tubes: int | None = 8, save_tubes: bool = True, save_html: bool = True) -> dict[str, Any]:
    """Write sample `clip` of `result` (image: (C, [T,] H, W) in [0, 1]); returns the files written,
    relative to `root`: {"nested", "graph", "figure", "html", "tubes": [...]}."""
    base = Path("pyramid") / stem
    folder = Path(root) / base
    tree = result.tree(clip)
    flat = tree.to_flat()
    ids = [i for row in figure_nodes(result, clip, max_tubes) for i in row]
    tubes = dict(zip(ids, result.tubes(clip, ids), strict=True))
    files: dict[str, Any] = {"tubes": []}
    thumbs: dict[int, bytes] = {}
    gifs: dict[int, str] = {}
    image = image.detach().cpu()
    for node_id, tube in tubes.items():
        node = tree.nodes[node_id]
        name = tube_name(node, len(tree.children(node_id)))
        caption = f"level {node.level} {node.layer} kernel {node.kernel}"
        thumb, _ = thumbnail(image, tube, THUMBNAIL)
        thumbs[node_id] = encode_jpeg(thumb)
        if not save_tubes:
            continue
        if tube.dim() == 3:
            frames = clip_overlays(image, tube.cpu())
            save_png(folder / "tubes" / f"{name}_strip.png", add_caption(frame_strip(frames), caption))
            save_gif(folder / "tubes" / f"{name}.gif", frames)
            rels = [f"tubes/{name}_strip.png", f"tubes/{name}.gif"]
        else:
            save_png(folder / "tubes" / f"{name}.png", add_caption(overlay(image, tube.cpu()), caption))
            rels = [f"tubes/{name}.png"]
        gifs[node_id] = rels[-1]
        flat["nodes"][node_id]["tube"] = rels[-1]
        files["tubes"] += [str(base / r) for r in rels]
    write_json_atomic(folder / "class_dependency_graph.json", tree.to_nested())
    write_json_atomic(folder / "graph.json", flat)
    save_png(folder / "pyramid.png", pyramid_figure(result, clip, image, max_tubes, tubes=tubes))
    files.update(nested=str(base / "class_dependency_graph.json"), graph=str(base / "graph.json"),
                 figure=str(base / "pyramid.png"))
    if save_html:
        title = f"Class Feature Pyramid · {stem} · class {tree.target} {tree.meta.get('target_name', '')}"
        write_bytes_atomic(folder / "graph.html", graph_page(flat, thumbs, gifs, title).encode())
        files["html"] = str(base / "graph.html")
    return files
