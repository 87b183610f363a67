"""`visualise_features`: stage A (encode, cluster, facets) and stage B (optimise every facet's image)
on any image or clip classifier, in one call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from vizlab.errors import ConfigError, InputError
from vizlab.featvis.clustering import Facets, find_facets
from vizlab.featvis.encoding import FeatureTaps, encode
from vizlab.featvis.optimise import GenerateOptions, Generation, generate, target_activation
from vizlab.featvis.original import resolve_bugs
from vizlab.featvis.schedules import Octave
from vizlab.layers import LayerSpec, last_spatial_layer
from vizlab.methods.base import frozen_parameters


@dataclass
class FeatureVisResult:
    """facets (stage A), generation (stage B), the tapped layers, and the pooled target features of
    the generated images (K, C) and of the starting images (K, C)."""

    facets: Facets
    generation: Generation
    layer: str
    penalty_layer: str | None
    generated_features: torch.Tensor
    start_features: torch.Tensor
    bugs: frozenset[str]

    def activations(self) -> dict[str, torch.Tensor]:
        """(K,) mean activation of each facet's target channels S_k on: the generated image, its
        starting image, its members (mean over members), its k-means cluster (mean over assigned
        images), and the target vector t_k; plus ratio = generated / members."""
        f = self.facets
        ch = f.channels.float()
        per_image = f.features.float() @ ch.T / ch.sum(1)          # (N, K): image n on S_k
        members = torch.stack([per_image[torch.as_tensor(f.members[k]), k].mean() for k in range(f.clusters)])
        assigned = torch.stack([per_image[torch.as_tensor(f.labels == k), k].mean() for k in range(f.clusters)])
        generated = target_activation(self.generated_features, f.channels)
        return {"generated": generated, "start": target_activation(self.start_features, f.channels),
                "members": members, "assigned": assigned, "target": target_activation(f.targets, f.channels),
                "ratio": generated / members}

    def cluster_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per facet: channels, members (names, distances, weights), assigned
        images and the activations above."""
        f = self.facets
        acts = {k: v.tolist() for k, v in self.activations().items()}
        out = []
        for k, channels in enumerate(f.channel_lists()):
            out.append({
                "cluster": k,
                "channels": channels,
                "channel_targets": [float(f.targets[k, c]) for c in channels],
                "members": [{"index": int(n), "name": f.names[n], "distance": float(f.distances[k, n]),
                             "weight": float(w)} for n, w in zip(f.members[k], f.weights[k], strict=True)],
                "assigned": [f.names[n] for n in np.flatnonzero(f.labels == k)],
                "centre": f.centres[k].tolist(),
                "activation": {name: values[k] for name, values in acts.items()},
            })
        return out


def _normalizer(model: nn.Module, normalize: Callable | None) -> Callable[[torch.Tensor], torch.Tensor]:
    if normalize is not None:
        return normalize
    return model.normalize if hasattr(model, "normalize") else (lambda x: x)


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() not in (4, 5) or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"featvis needs an image set (N, 3, H, W) or clips (N, 3, T, H, W) in [0, 1]; got {shape}.")
    if images.is_floating_point():
        if not torch.isfinite(images).all():
            raise InputError("The image set contains NaN or Inf values.")
        if images.min() < 0 or images.max() > 1:
            raise InputError(f"Images must be in [0, 1] (unnormalised); got values in [{float(images.min()):.3g}, "
                             f"{float(images.max()):.3g}].")


def visualise_features(model: nn.Module, images: torch.Tensor, names: Sequence[str] | None = None, *,
                       layer: LayerSpec | None = None, penalty_layer: LayerSpec | None = None,
                       target_channels: int = 50, clusters: int = 10, members: int = 10, iterations: int = 2001,
                       octaves: Sequence[Octave | dict] | None = None, embedding: str = "tsne", pca_dims: int = 50,
                       perplexity: float = 30.0, seed: int = 0, strict_original: bool | Sequence[str] = False,
                       batch_size: int = 16, normalize: Callable | None = None, **options: Any) -> FeatureVisResult:
    """Class-agnostic feature visualisation ("The Mind's Eye", Stergiou, ICIP 2021) of `layer`.

    images: (N, 3, H, W) or (N, 3, T, H, W) in [0, 1] (float, or uint8 0…255), any device; they run
    on the model's device. layer None: a zoo model's default layer, else the last spatial layer.
    penalty_layer None: the input of the last convolution before `layer`; "none": no L1 term.
    octaves: a list of `Octave`s or dicts (default: one octave with the original's demo values).
    options: GenerateOptions fields (param="pixel"|"fft", save_every, progress, fft=FourierOptions(...), ...).
    Returns a FeatureVisResult (images in result.generation.images, (K, 3, *S) in [0, 1]).
    """
    check_images(images)
    known = {f.name for f in fields(GenerateOptions)} - {"bugs", "seed"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"Unknown featvis option(s) {unknown}; valid: {', '.join(sorted(known))}.")
    bugs = resolve_bugs(strict_original)
    gen_options = GenerateOptions(**options, seed=seed, bugs=bugs)
    gen_options.check()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"task.batch_size must be an integer >= 1, got {batch_size!r}.")
    octaves = [Octave.from_config(o, j) for j, o in enumerate(octaves if octaves is not None else [Octave()])]
    device = _device(model)
    norm = _normalizer(model, normalize)
    x01 = images.float() / 255 if not images.is_floating_point() else images.float()
    if "bgr" in bugs:
        x01 = x01.flip(1)
    was_training = model.training
    model.eval()
    try:
        with frozen_parameters(model):
            probe = norm(x01[:1].to(device))
            if layer is None:
                info = getattr(model, "info", None)
                layer = info.default_layer if info is not None else last_spatial_layer(model, probe)
            taps = FeatureTaps(model, layer, penalty_layer).probe(probe)
            progress = bool(options.get("progress", False))
            features = encode(taps, x01, norm, device, batch_size, progress)
            facets = find_facets(features, x01, clusters, target_channels, members, embedding, pca_dims, perplexity,
                                 seed, names, farthest="members" in bugs, ties="ties" in bugs)
            generation = generate(taps, facets, octaves, iterations, norm, gen_options, device)
            generated = encode(taps, generation.images, norm, device, batch_size)
            start = encode(taps, generation.snapshots[0], norm, device, batch_size)
    finally:
        model.train(was_training)
    return FeatureVisResult(facets, generation, taps.target_name, taps.penalty_name, generated, start, bugs)
