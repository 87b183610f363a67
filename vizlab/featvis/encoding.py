"""Taps on a network: the target layer's output (pooled to one value per channel) and the penalty
layer's input, recorded during a forward pass that stops as soon as both are recorded.

A module that runs several times per forward (torchvision's Bottleneck reuses one ReLU three
times) is tapped at its **last** call, as the original's forward hooks (which overwrite) did; a
probe forward counts the calls once. Stopping early saves the rest of the network (the original
fed a truncated `nn.Sequential` for the same reason).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from vizlab.errors import InputError, LayerNotFoundError
from vizlab.layers import LayerSpec, resolve_layer, unwrap
from vizlab.progress import progress_bar


class _StopForward(Exception):
    """Raised by a hook once every tapped tensor has been recorded."""


def pool(activation: torch.Tensor) -> torch.Tensor:
    """(N, C, *S) → (N, C): global average over every non-channel axis; (N, C) stays."""
    if activation.dim() < 2:
        raise InputError(f"The target layer's output has shape {tuple(activation.shape)}; it needs a channel axis.")
    return activation.flatten(2).mean(2) if activation.dim() > 2 else activation


def layer_name(model: nn.Module, module: nn.Module) -> str:
    return next((n for n, m in unwrap(model).named_modules() if m is module), type(module).__name__)


class FeatureTaps:
    """Record `target`'s output and `penalty`'s input during forward passes of `model`.

    target / penalty: dotted layer names (relative to a zoo model's `net`) or modules; penalty
    None: the input of the last convolution that runs before the target's output (found by the
    probe), "none": no penalty. `probe(x)` must run once before `run(x)`.
    """

    def __init__(self, model: nn.Module, target: LayerSpec, penalty: LayerSpec | None = None) -> None:
        self.model = model
        self.target = resolve_layer(model, target)
        self.target_name = target if isinstance(target, str) else layer_name(model, self.target)
        self.auto_penalty = penalty is None
        self.penalty = None if penalty is None or penalty == "none" else resolve_layer(model, penalty)
        self.penalty_name = penalty if isinstance(penalty, str) else (
            layer_name(model, self.penalty) if self.penalty is not None else None)
        self.target_calls = self.penalty_calls = 0
        self.channels = 0
        self.feature_shape: tuple[int, ...] = ()
        self.truncate = True

    # --- probe: call counts, channels, default penalty layer -----------------------------------
    @torch.no_grad()
    def probe(self, x: torch.Tensor) -> FeatureTaps:
        """One forward on `x` (a small batch) that counts the calls of the tapped layers, finds the
        default penalty layer and the target's channel count; checks both layers run."""
        order: list[tuple[nn.Module, int]] = []
        counts: dict[nn.Module, int] = {}
        target_done = [-1]
        handles = []
        convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

        def count(module, _inputs, output=None):
            counts[module] = counts.get(module, 0) + 1
            order.append((module, counts[module]))
            if module is self.target:
                target_done[0] = len(order)
                self.feature_shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()

        watched = {self.target} | ({self.penalty} if self.penalty is not None else set())
        if self.auto_penalty:
            watched |= {m for m in unwrap(self.model).modules() if isinstance(m, convs)}
        for module in watched:
            if module is self.target:
                handles.append(module.register_forward_hook(count))
            else:
                handles.append(module.register_forward_pre_hook(lambda m, i: count(m, i)))
        try:
            self.model(x)
        finally:
            for h in handles:
                h.remove()
        if self.target not in counts:
            raise InputError(f"Layer {self.target_name!r} did not run during the forward pass; pick a layer on "
                             "the path from input to logits (`vizlab layers MODEL`).")
        if len(self.feature_shape) < 1:
            raise InputError(f"Layer {self.target_name!r} does not output a single tensor with channels; pick "
                             "another target layer.")
        self.target_calls = counts[self.target]
        self.channels = self.feature_shape[0]
        if self.auto_penalty:
            before = [m for m, _ in order[:target_done[0]] if isinstance(m, convs) and m is not self.target]
            if not before:
                raise LayerNotFoundError(f"No convolution runs before {self.target_name!r}; set task.penalty_layer "
                                         "(or 'none').")
            self.penalty = before[-1]
            self.penalty_name = layer_name(self.model, self.penalty)
        if self.penalty is not None:
            if self.penalty not in counts:
                raise InputError(f"Penalty layer {self.penalty_name!r} did not run during the forward pass; pick a "
                                 "layer on the path from input to logits.")
            self.penalty_calls = counts[self.penalty]
        return self

    # --- tapped forward passes ----------------------------------------------------------------
    @contextmanager
    def attached(self, truncate: bool = True) -> Iterator[FeatureTaps]:
        """Hooks live inside the block; `run(x)` then returns (target output, penalty input)."""
        if not self.target_calls:
            raise RuntimeError("FeatureTaps.probe(x) must run before tapping.")
        self.truncate = truncate
        self._calls = {"target": 0, "penalty": 0}
        self._out: torch.Tensor | None = None
        self._pen: torch.Tensor | None = None

        def done() -> bool:
            return self._out is not None and (self.penalty is None or self._pen is not None)

        def on_target(_m, _i, output):
            self._calls["target"] += 1
            if self._calls["target"] == self.target_calls:
                self._out = output
                if self.truncate and done():
                    raise _StopForward

        def on_penalty(_m, inputs):
            self._calls["penalty"] += 1
            if self._calls["penalty"] == self.penalty_calls:
                self._pen = inputs[0]
                if self.truncate and done():
                    raise _StopForward

        handles = [self.target.register_forward_hook(on_target)]
        if self.penalty is not None:
            handles.append(self.penalty.register_forward_pre_hook(on_penalty))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Forward `x` (inside `attached()`): (target output (N, C, *S), penalty input or None)."""
        self._calls["target"] = self._calls["penalty"] = 0
        self._out = self._pen = None
        try:
            self.model(x)
        except _StopForward:
            pass
        if self._out is None:
            raise InputError(f"Layer {self.target_name!r} did not run during the forward pass.")
        return self._out, self._pen


@torch.no_grad()
def encode(taps: FeatureTaps, images: torch.Tensor, normalize, device: torch.device, batch_size: int = 16,
           progress: bool = False) -> torch.Tensor:
    """Pooled target features (N, C) float32 on the CPU of `images` ((N, 3, *S) in [0, 1], any device),
    `batch_size` at a time; `normalize` maps [0, 1] to the model's input space."""
    out = []
    with taps.attached(truncate=True):
        for start in progress_bar(range(0, images.shape[0], batch_size), desc="featvis: encoding", disable=not progress,
                          leave=False):
            batch = images[start:start + batch_size].to(device).float()
            feats, _ = taps.run(normalize(batch))
            out.append(pool(feats).float().cpu())
    return torch.cat(out)
