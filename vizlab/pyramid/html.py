"""A self-contained static HTML page that draws a kernel tree from its flat JSON.

The graph is plain SVG written here (a tidy top-down tree: the class on top, one row per level;
link width and node size grow with the relative contribution; every node has a tooltip with its
layer, kernel and contribution). Below it, every node that has a tube shows it as a thumbnail
(JPEG data URI), linked to its GIF when one was written. The flat JSON itself is embedded as a
`<script type="application/json">` data block. Nothing is fetched from the network at view time.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

LEVEL_GAP = 90
LEAF_GAP = 14
MARGIN = 30
COLOURS = ("#222222", "#c0392b", "#2471a3", "#229954", "#b9770e", "#7d3c98", "#117864", "#6e2c00")


def layout(flat: dict[str, Any]) -> dict[int, tuple[float, float]]:
    """node id → (x, y): leaves evenly spaced in depth-first order, parents centred over their children."""
    kids: dict[int | None, list[dict[str, Any]]] = {}
    for node in flat["nodes"]:
        kids.setdefault(node["parent"], []).append(node)
    for children in kids.values():
        children.sort(key=lambda n: n["key"])
    pos: dict[int, tuple[float, float]] = {}
    next_leaf = [0]

    def place(node: dict[str, Any]) -> float:
        below = kids.get(node["id"], [])
        if below:
            xs = [place(child) for child in below]
            x = (xs[0] + xs[-1]) / 2
        else:
            x = MARGIN + next_leaf[0] * LEAF_GAP
            next_leaf[0] += 1
        pos[node["id"]] = (x, MARGIN + node["level"] * LEVEL_GAP)
        return x

    stack = kids.get(None, [])
    for root in stack:
        place(root)
    return pos


def _label(node: dict[str, Any]) -> str:
    contribution = node.get("contribution")
    rel = node.get("relative")
    parts = [f"level {node['level']}", node["layer"], f"kernel {node['kernel']}", f"key {node['key']}"]
    if contribution is not None:
        parts.append(f"contribution {contribution:.4g}")
    if rel is not None:
        parts.append(f"relative {rel:.3f}")
    parts.append(f"{node.get('children', 0)} children")
    return " · ".join(parts)


def svg(flat: dict[str, Any]) -> str:
    """The tree as an <svg> element (nodes `g.node`, links `path.link`)."""
    pos = layout(flat)
    width = max([x for x, _ in pos.values()] + [0]) + MARGIN
    height = max([y for _, y in pos.values()] + [0]) + MARGIN
    parts = [f'<svg class="graph" width="{width:.0f}" height="{height:.0f}" '
             f'viewBox="0 0 {width:.0f} {height:.0f}">']
    by_id = {n["id"]: n for n in flat["nodes"]}
    for link in flat["links"]:
        (x0, y0), (x1, y1) = pos[link["source"]], pos[link["target"]]
        mid = (y0 + y1) / 2
        value = link.get("value") or 0.0
        colour = COLOURS[by_id[link["target"]]["level"] % len(COLOURS)]
        parts.append(f'<path class="link" d="M{x0:.1f},{y0:.1f} C{x0:.1f},{mid:.1f} {x1:.1f},{mid:.1f} {x1:.1f},'
                     f'{y1:.1f}" stroke="{colour}" stroke-opacity="0.45" stroke-width="{0.6 + 3 * value:.2f}" '
                     'fill="none"/>')
    for node in flat["nodes"]:
        x, y = pos[node["id"]]
        rel = node.get("relative") or 0.0
        colour = COLOURS[node["level"] % len(COLOURS)]
        anchor = f'<a href="#node-{node["id"]}">' if node.get("thumbnail") else ""
        text = ""
        if node["level"] <= 1:
            name = node.get("name") or (f"k{node['kernel']}" if node["level"] else f"class {node['kernel']}")
            text = (f'<text x="{x:.1f}" y="{y - 9:.1f}" text-anchor="middle" font-size="10">'
                    f'{html.escape(str(name))}</text>')
        parts.append(f'<g class="node" data-id="{node["id"]}" data-level="{node["level"]}">{anchor}'
                     f'<title>{html.escape(_label(node))}</title>'
                     f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{3 + 5 * rel:.1f}" fill="{colour}"/>{text}'
                     f'{"</a>" if anchor else ""}</g>')
    parts.append("</svg>")
    return "".join(parts)


def graph_page(flat: dict[str, Any], thumbnails: dict[int, bytes] | None = None,
               tube_files: dict[int, str] | None = None, title: str = "Class Feature Pyramid") -> str:
    """The HTML page of one tree. thumbnails: node id → JPEG bytes; tube_files: node id → relative GIF path."""
    thumbnails, tube_files = thumbnails or {}, tube_files or {}
    data = dict(flat)
    data["nodes"] = [{**n, "thumbnail": n["id"] in thumbnails} for n in flat["nodes"]]
    levels = "".join(
        f"<li>level {entry['level']}: " + ", ".join(
            f"{html.escape(layer['layer'])} (keys {layer['offset']}–{layer['offset'] + layer['kernels'] - 1})"
            for layer in entry["layers"]) + "</li>" for entry in flat["levels"])
    gallery = []
    for node in data["nodes"]:
        if node["id"] not in thumbnails:
            continue
        src = "data:image/jpeg;base64," + base64.b64encode(thumbnails[node["id"]]).decode()
        img = f'<img src="{src}" alt="tube of node {node["id"]}">'
        if node["id"] in tube_files:
            img = f'<a href="{html.escape(tube_files[node["id"]])}">{img}</a>'
        gallery.append(f'<figure id="node-{node["id"]}">{img}<figcaption>level {node["level"]} · '
                       f'{html.escape(node["layer"])} · kernel {node["kernel"]} · {node["children"]} children'
                       "</figcaption></figure>")
    settings = ", ".join(f"{k} {html.escape(json.dumps(flat.get(k)))}" for k in ("model", "threshold", "depth",
                                                                                  "top_k", "strict_original", "weighted"))
    payload = json.dumps(data).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
.scroll {{ overflow: auto; border: 1px solid #ddd; max-height: 70vh; }}
figure {{ display: inline-block; margin: 4px; font-size: 11px; width: 110px; vertical-align: top; }}
figure img {{ width: 108px; height: 108px; image-rendering: pixelated; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="summary">class {flat['target']} {html.escape(str(flat.get('target_name', '')))} · {len(flat['nodes'])} nodes ·
{settings}</p>
<ul class="levels">{levels}</ul>
<div class="scroll">{svg(data)}</div>
<h2>Saliency tubes</h2>
<div class="tubes">{''.join(gallery)}</div>
<script type="application/json" id="pyramid-data">{payload}</script>
</body></html>
"""
