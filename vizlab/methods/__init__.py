"""Attribution methods and their registry.

    method = vizlab.methods.build("gradcam", model, layer="layer4")
    saliency = method(x, target)   # (N, H, W) or (N, T, H, W) in [0, 1]
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from vizlab.errors import ConfigError, unknown_choice
from vizlab.methods.base import AttributionMethod, Explanation
from vizlab.methods.cam import CAM, GradCAM
from vizlab.methods.extremal import ExtremalPerturbation
from vizlab.methods.gradients import Gradients, GradientsXInput, IntegratedGradients, SmoothGrad
from vizlab.methods.hrcam import HRCAM
from vizlab.methods.video_perturbation import EP2D, EP3D, STEP

REGISTRY: dict[str, type[AttributionMethod]] = {
    cls.name: cls for cls in (CAM, GradCAM, Gradients, GradientsXInput, IntegratedGradients, SmoothGrad)
}
REGISTRY.update({cls.name: cls for cls in (ExtremalPerturbation, EP2D, EP3D, STEP)})
REGISTRY[HRCAM.name] = HRCAM


def register(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    """Class decorator: add a method to the registry under `cls.name`."""
    REGISTRY[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    return sorted(REGISTRY)


def method_parameters(name: str) -> dict[str, Any]:
    """The keyword options of method `name` with their defaults."""
    if name not in REGISTRY:
        raise unknown_choice("method", name, REGISTRY)
    sig = inspect.signature(REGISTRY[name].__init__)
    return {k: p.default for k, p in sig.parameters.items() if k not in ("self", "model")}


def build(name: str, model: nn.Module, **options: Any) -> AttributionMethod:
    """Instantiate method `name` for `model`; unknown options raise a ConfigError listing valid ones."""
    valid = method_parameters(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"Method {name!r} has no option(s) {unknown}. Valid options: {sorted(valid)}.")
    return REGISTRY[name](model, **options)


__all__ = ["CAM", "HRCAM", "REGISTRY", "AttributionMethod", "Explanation", "GradCAM", "Gradients", "GradientsXInput",
           "IntegratedGradients", "SmoothGrad", "available_methods", "build", "method_parameters", "register"]
__all__ += ["EP2D", "EP3D", "STEP", "ExtremalPerturbation"]
