"""`method=pyramid`: Class Feature Pyramids' class-level saliency tube as an attribution map, so it is
scored like any other method (pointing, deletion/insertion, ...). The whole pyramid rides along in
`Explanation.extras["pyramid"]` (a `vizlab.pyramid.PyramidResult`), the explain loop saves its
figure as heatmaps/<index>_<name>_pyramid.png and records the tree's size in "details".
For the tree's JSON, every node's tube and the graph page, use task=pyramid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vizlab.methods.base import AttributionMethod, Explanation, Target
from vizlab.methods.registry import register
from vizlab.pyramid.core import ClassFeaturePyramid, PyramidResult


@register
class Pyramid(AttributionMethod):
    """Class Feature Pyramids (Stergiou et al., ICCVW 2019) on any CNN with a GAP + classifier head.

    saliency: (N, *S) the class node's tube — the selected last-layer kernels' maps, each weighted by
    its classifier weight (× its share of a residual sum), ReLU, upsampled, min-max to [0, 1].
    raw: (N, *S') the same before upsampling. threshold θ / depth D: None = the per-network default
    (vizlab.pyramid.defaults: 0.55–0.65 and 3 for the paper's networks). top_k, strict_original,
    weighted: see `vizlab.pyramid.ClassFeaturePyramid`.
    """

    name = "pyramid"
    summary = ("Class Feature Pyramids' class-level tube: the last-layer kernels whose contribution W[t, c]·v_c "
               "reaches θ of the strongest, their maps weighted by W (see *Class Feature Pyramids* below)")
    defaults_note = ("θ and D per network (the paper's table; `motion_cnn` 0.3); the true input of every layer, traced "
                     "(the original assumed a chain of convs: `strict_original=true`)")

    def __init__(self, model: nn.Module, threshold: float | None = None, depth: int | None = None,
                 top_k: int | Sequence[int | None] | None = None, strict_original: bool = False,
                 weighted: bool | None = None) -> None:
        super().__init__(model)
        self.pyramid = ClassFeaturePyramid(model, threshold, depth, top_k, strict_original, weighted)

    def explain(self, x: torch.Tensor, target: Target) -> Explanation:
        result = self.pyramid(x, target)
        return Explanation(result.saliency, result.raw, result.target, result.logits.detach(), {"pyramid": result})

    def sample_details(self, info: Explanation, index: int) -> dict[str, Any]:
        result: PyramidResult = info.extras["pyramid"]
        sizes = result.tree(index).level_sizes()
        n = result.num_clips
        return {"pyramid_nodes": 1 + sum(sizes), "pyramid_level_sizes": sizes,
                "backstep_ms": 1000 * result.seconds["backstep"] / n}

    def sample_figures(self, info: Explanation, index: int, image: torch.Tensor) -> dict[str, Any]:
        from vizlab.pyramid.figure import pyramid_figure

        return {"pyramid": pyramid_figure(info.extras["pyramid"], index, image)}

    def __repr__(self) -> str:
        p = self.pyramid
        return (f"Pyramid(threshold={p.threshold}, depth={p.depth}, top_k={p.top_k}, strict_original={p.strict}, "
                f"weighted={p.weighted})")
