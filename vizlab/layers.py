"""Find layers by dotted name ("layer4", "features.denseblock4", "blocks.6.0") and list candidates."""

from __future__ import annotations

import torch
from torch import nn

from vizlab.errors import InputError, LayerNotFoundError, suggest

LayerSpec = str | nn.Module


def unwrap(model: nn.Module) -> nn.Module:
    """Return the network inside a zoo wrapper (`ZooModel.net`), or the model itself."""
    return getattr(model, "net", model) if getattr(model, "is_zoo_model", False) else model


def wrapper_prefix(model: nn.Module) -> str:
    """How `model.named_modules()` spells the wrapped network's layers: "net." for a zoo model, else ""."""
    net = unwrap(model)
    if net is model:
        return ""
    return next((f"{name}." for name, m in model.named_modules() if m is net and name), "")


def list_layers(model: nn.Module, kinds: tuple[type, ...] | None = None) -> list[str]:
    """Dotted names of all named sub-modules (optionally only those of the given types), relative to
    the network inside a zoo wrapper ("bn2"); the wrapper's own spelling ("net.bn2") resolves too."""
    net = unwrap(model)
    return [n for n, m in net.named_modules() if n and (kinds is None or isinstance(m, kinds))]


def resolve_layer(model: nn.Module, layer: LayerSpec) -> nn.Module:
    """Return the sub-module named `layer` (dotted path) or `layer` itself if it is a module of `model`.

    Names are relative to the network ("bn2"); for a zoo model the spelling of its own
    named_modules() ("net.bn2") is accepted as well. Raises LayerNotFoundError listing the
    closest names when the path does not exist.
    """
    net = unwrap(model)
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in net.modules()):
            raise LayerNotFoundError("The layer module passed is not part of this model.")
        return layer
    if not isinstance(layer, str):
        raise InputError(f"layer must be a dotted layer name such as 'layer4' (a string) or a module of the model; "
                         f"got {layer!r} ({type(layer).__name__}). Run `vizlab layers MODEL` to list the names.")
    modules = dict(net.named_modules())
    if layer in modules and layer != "":
        return modules[layer]
    prefix = wrapper_prefix(model)
    if prefix and layer.startswith(prefix) and layer[len(prefix):] in modules and layer != prefix:
        return modules[layer[len(prefix):]]
    names = [n for n in modules if n]
    top = [n for n in names if "." not in n]
    hint = suggest(layer[len(prefix):] if prefix and layer.startswith(prefix) else layer, names)
    raise LayerNotFoundError(
        f"Layer {layer!r} not found in {type(net).__name__}.{hint} "
        f"Top-level layers: {', '.join(top[:30])}{' ...' if len(top) > 30 else ''}. "
        "Run `vizlab layers MODEL` to list every layer name."
    )


def last_module_of_type(model: nn.Module, kinds: tuple[type, ...]) -> tuple[str, nn.Module] | None:
    """The last (in registration order) sub-module of one of `kinds`, with its name."""
    found = None
    for name, module in unwrap(model).named_modules():
        if isinstance(module, kinds):
            found = (name, module)
    return found


def first_module_of_type(model: nn.Module, kinds: tuple[type, ...]) -> tuple[str, nn.Module] | None:
    """The first (in registration order) sub-module of one of `kinds`, with its name."""
    for name, module in unwrap(model).named_modules():
        if isinstance(module, kinds):
            return name, module
    return None


def last_spatial_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Name of the last module, in execution order, whose output is a feature map with spatial extent
    (N, C, *S) and some S > 1 — for a CNN, the input of global pooling. Runs one no-grad forward on x."""
    net = unwrap(model)
    order: list[str] = []
    handles = []
    for name, module in net.named_modules():
        if not name:
            continue

        def hook(_m, _i, out, name=name):
            if isinstance(out, torch.Tensor) and out.dim() in (4, 5) and max(out.shape[2:]) > 1:
                order.append(name)

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise LayerNotFoundError("No module of this model outputs a spatial feature map; pass layer= explicitly.")
    return order[-1]
