"""Stage A: cluster an image set by its pooled layer features into "facets", and give each facet
its target feature vector, its target channels and its initial image.

features (N, C) → PCA (≤ pca_dims components) → 2-D embedding (t-SNE, or the first two PCA
components) → k-means (K clusters) in the embedding. Then for each cluster k:
- d_{k,n}: distance of every image n to the cluster centre in the embedding;
- members 𝓜_k: the `members` images nearest the centre (the original took the farthest: bug
  "members"), weights w_{k,n} = softmax over 𝓜_k of 1/d_{k,n};
- target t_k = Σ w_{k,n} v_n (C,), target channels S_k = the `target_channels` largest entries of t_k
  (the original selected by value membership, so ties could add channels: bug "ties");
- initial image I_k = Σ w_{k,n} img_n.
Every random step is seeded (PCA's solver, t-SNE, k-means), so the same seed gives the same facets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from vizlab.errors import ConfigError

Embedding = Literal["tsne", "pca"]
EMBEDDINGS = ("tsne", "pca")
EXACT_TSNE_MAX = 1000  # t-SNE's exact gradient up to this many images, Barnes-Hut (sklearn's default) above


@dataclass
class Facets:
    """The result of stage A for N images, K clusters, C channels, M members per cluster.

    features (N, C) · embedding (N, 2) · labels (N,) k-means assignment · centres (K, 2) ·
    distances (K, N) in the embedding · members (K, M) image indices, nearest first ·
    weights (K, M) · targets (K, C) · channels (K, C) bool: the target channel sets ·
    images (K, 3, *S) initial images in [0, 1] · names: the N image names.
    """

    features: torch.Tensor
    embedding: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    distances: np.ndarray
    members: np.ndarray
    weights: np.ndarray
    targets: torch.Tensor
    channels: torch.Tensor
    images: torch.Tensor
    names: list[str] = field(default_factory=list)
    perplexity: float | None = None

    @property
    def clusters(self) -> int:
        return self.targets.shape[0]

    def channel_lists(self) -> list[list[int]]:
        """S_k as sorted channel indices, per cluster."""
        return [torch.nonzero(row).flatten().tolist() for row in self.channels]

    def subset(self, index: Sequence[int]) -> Facets:
        """Facets of the clusters in `index` only (for one-cluster-at-a-time runs)."""
        idx = list(index)
        return Facets(self.features, self.embedding, self.labels, self.centres[idx], self.distances[idx],
                      self.members[idx], self.weights[idx], self.targets[idx], self.channels[idx], self.images[idx],
                      self.names, self.perplexity)


def embed(features: np.ndarray, method: Embedding = "tsne", pca_dims: int = 50, perplexity: float = 30.0,
          seed: int = 0) -> tuple[np.ndarray, float | None]:
    """(N, C) → (N, 2) embedding and the t-SNE perplexity used (None for PCA).

    PCA keeps min(pca_dims, N, C) components (the original: 50). t-SNE needs perplexity < N; it is
    lowered to (N − 1)/3 for small sets (the usual N ≥ 3·perplexity guideline)."""
    from sklearn.decomposition import PCA

    n, c = features.shape
    if method not in EMBEDDINGS:
        raise ConfigError(f"task.embedding must be one of {EMBEDDINGS}, got {method!r}.")
    dims = min(pca_dims, n, c)
    if method == "pca":
        dims = min(2, n, c)
    reduced = PCA(n_components=dims, svd_solver="full", random_state=seed).fit_transform(features)
    if method == "pca":
        out = np.zeros((n, 2), np.float64)
        out[:, :reduced.shape[1]] = reduced
        return out, None
    from sklearn.manifold import TSNE

    used = float(min(perplexity, max(1.0, (n - 1) / 3)))
    solver = "exact" if n <= EXACT_TSNE_MAX else "barnes_hut"   # Barnes-Hut is slower on small sets
    tsne = TSNE(n_components=2, perplexity=used, init="pca", random_state=seed, method=solver)
    return tsne.fit_transform(reduced).astype(np.float64), used


def inverse_distance_weights(distances: np.ndarray) -> np.ndarray:
    """softmax(1/d) along the last axis (the original's exp(1/d) / Σ exp(1/d), computed stably;
    d = 0 counts as 1e-12)."""
    inv = 1.0 / np.maximum(distances, 1e-12)
    inv = inv - inv.max(-1, keepdims=True)
    e = np.exp(inv)
    return e / e.sum(-1, keepdims=True)


def top_channels(targets: torch.Tensor, count: int, ties: bool = False) -> torch.Tensor:
    """(K, C) bool: the `count` largest entries per row; `ties=True` (the original) keeps every
    entry whose value equals one of those, so ties can add channels."""
    k, c = targets.shape
    idx = targets.topk(count, dim=1).indices
    mask = torch.zeros(k, c, dtype=torch.bool, device=targets.device)
    mask.scatter_(1, idx, True)
    if ties:
        kth = targets.gather(1, idx).min(1, keepdim=True).values
        mask |= targets >= kth
    return mask


def find_facets(features: torch.Tensor, images: torch.Tensor, clusters: int, target_channels: int,
                members: int = 10, embedding: Embedding = "tsne", pca_dims: int = 50, perplexity: float = 30.0,
                seed: int = 0, names: Sequence[str] | None = None, farthest: bool = False,
                ties: bool = False) -> Facets:
    """Stage A on pooled features (N, C) and their images (N, 3, *S) in [0, 1] (float or uint8/255).

    members is capped at N. farthest / ties reproduce the original's member and channel selection.
    """
    from sklearn.cluster import KMeans

    n, c = features.shape
    if isinstance(clusters, bool) or not isinstance(clusters, int) or not 1 <= clusters <= n:
        raise ConfigError(f"task.clusters must be an integer in 1..{n} (the number of images), got {clusters!r}.")
    if isinstance(target_channels, bool) or not isinstance(target_channels, int) or not 1 <= target_channels <= c:
        raise ConfigError(f"task.target_channels must be an integer in 1..{c} (the target layer's channels), "
                          f"got {target_channels!r}.")
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ConfigError(f"task.members must be an integer >= 1, got {members!r}.")
    if not torch.isfinite(features).all():
        raise ConfigError("The target layer's features contain NaN or Inf; check the model and the images.")
    m = min(members, n)
    feats = features.double().numpy()
    points, used = embed(feats, embedding, pca_dims, perplexity, seed)
    km = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit(points)
    labels = km.labels_.astype(np.int64)
    distances = km.transform(points).T                                  # (K, N)
    order = np.argsort(distances, axis=1, kind="stable")
    chosen = order[:, ::-1][:, :m] if farthest else order[:, :m]         # (K, M)
    weights = inverse_distance_weights(np.take_along_axis(distances, chosen, 1))
    w = torch.from_numpy(weights).to(features.dtype)
    targets = torch.einsum("km,kmc->kc", w, features[torch.from_numpy(chosen.copy())])
    channels = top_channels(targets, target_channels, ties)
    img = images.float() / 255 if not images.is_floating_point() else images.float()
    init = torch.einsum("km,km...->k...", w.float(), img[torch.from_numpy(chosen.copy())])
    return Facets(features=features, embedding=points, labels=labels, centres=km.cluster_centers_,
                  distances=distances, members=chosen, weights=weights, targets=targets.float(), channels=channels,
                  images=init.clamp(0, 1), names=list(names) if names is not None else [str(i) for i in range(n)],
                  perplexity=used)
