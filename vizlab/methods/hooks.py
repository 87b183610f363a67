"""Capture a layer's output during one forward pass; optionally start the autograd graph there.

Hooks live only inside the `with` block, so repeated calls never leak hooks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from vizlab.errors import InputError


class LayerCapture:
    """Holds the activation recorded by `capture_layer` (None until the layer runs)."""

    def __init__(self) -> None:
        self.activation: torch.Tensor | None = None
        self.calls = 0

    def get(self, layer_name: str) -> torch.Tensor:
        if self.activation is None:
            raise InputError(f"Layer {layer_name!r} did not run during the forward pass; "
                             "pick a layer on the path from input to logits.")
        return self.activation


@contextmanager
def capture_layer(layer: nn.Module, start_graph: bool = False) -> Iterator[LayerCapture]:
    """Record `layer`'s output tensor (as the layer returned it, even if a later op works in place).

    With `start_graph=True` the output is replaced by a fresh leaf that requires grad (and a clone,
    so in-place ops after the layer stay legal): with frozen parameters and an input that does
    not require grad, autograd then records nothing before the layer, and a backward pass from
    the logits stops at the layer. This is the least work Grad-CAM needs.

    The recorded activation is float32 when the layer computed in float16 / bfloat16 (mixed
    precision, `vizlab.fast_mode`), so maps and gradients at the layer are computed in float32;
    the model itself goes on with the layer's own dtype.
    """
    capture = LayerCapture()

    def hook(_module: nn.Module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise InputError(f"Layer {type(_module).__name__} returns {type(output).__name__}, not a "
                             "tensor; choose a layer whose output is a single feature map.")
        capture.calls += 1
        reduced = output.dtype in (torch.float16, torch.bfloat16)
        if not start_graph:  # a copy: an in-place op after the layer (ReLU(inplace=True)) must not change it
            capture.activation = output.detach().float() if reduced else output.detach().clone()
            return None
        leaf = (output.detach().float() if reduced else output.detach()).requires_grad_(True)
        capture.activation = leaf
        return leaf.to(output.dtype) if reduced else leaf.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield capture
    finally:
        handle.remove()
