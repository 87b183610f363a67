"""Attribution methods and their registry.

    method = vizlab.methods.build("gradcam", model, layer="layer4")
    saliency = method(x, target)   # (N, H, W) or (N, T, H, W) in [0, 1]

Each method module registers its classes with `@register` (vizlab.methods.registry); importing
this package imports them all.
"""

from __future__ import annotations

from vizlab.methods.base import AttributionMethod, Explanation
from vizlab.methods.cam import CAM, GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM
from vizlab.methods.cam_activation import EigenCAM, ScoreCAM
from vizlab.methods.extremal import ExtremalPerturbation
from vizlab.methods.gradients import Gradients, GradientsXInput, IntegratedGradients, SmoothGrad
from vizlab.methods.hrcam import HRCAM
from vizlab.methods.l2caf import L2CAF
from vizlab.methods.pyramid import Pyramid
from vizlab.methods.registry import REGISTRY, available_methods, build, method_parameters, register
from vizlab.methods.video_perturbation import EP2D, EP3D, STEP

__all__ = ["CAM", "EP2D", "EP3D", "HRCAM", "L2CAF", "REGISTRY", "STEP", "AttributionMethod", "EigenCAM", "Explanation",
           "ExtremalPerturbation", "GradCAM", "GradCAMPlusPlus", "Gradients", "GradientsXInput", "IntegratedGradients",
           "LayerCAM", "Pyramid", "ScoreCAM", "SmoothGrad", "XGradCAM", "available_methods", "build", "method_parameters",
           "register"]
