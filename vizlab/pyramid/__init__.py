"""Class Feature Pyramids (Stergiou et al., ICCVW 2019): class-relevant kernel trees through any 2-D or
3-D CNN, a saliency tube per tree node, and the tree as JSON, a figure and an HTML graph page.

    from vizlab.pyramid import ClassFeaturePyramid
    result = ClassFeaturePyramid(model, threshold=0.6, depth=3)(x, target=None)
    result.tree(0).to_nested()      # {"c": {"i": {"j": [k, ...]}}}, the original's class_dependency_graph.json
    result.tree(0).to_flat()        # nodes / links / levels for D3
    result.saliency                 # (N, T, H, W) class-level tubes in [0, 1]

Modules: graph (trace the real forward), plan (each layer's true input, the levels), backstep
(selection), tubes, tree (JSON forms), figure, html, output (per-sample files), defaults (θ, D per network).
"""

from vizlab.pyramid.core import ClassFeaturePyramid, PyramidResult
from vizlab.pyramid.defaults import NETWORK_DEFAULTS, defaults_for
from vizlab.pyramid.graph import trace
from vizlab.pyramid.plan import build_plan, sources
from vizlab.pyramid.tree import KernelTree, Node

__all__ = ["NETWORK_DEFAULTS", "ClassFeaturePyramid", "KernelTree", "Node", "PyramidResult", "build_plan",
           "defaults_for", "sources", "trace"]
