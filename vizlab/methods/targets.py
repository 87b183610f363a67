"""Several targets per sample, for any method: N samples × K classes become N·K rows (row n·K + k
is sample n explained for its k-th class), so one method call explains them all as one batch.

    targets = top_k_targets(model, x, 3)                 # (N, 3): each sample's 3 best classes
    xr, tr = repeat_for_targets(x, targets)              # (N·3, C, H, W), (N·3,)
    maps = vizlab.explain(model, xr, tr, method="l2caf").view(N, 3, H, W)

In the explain loop, `task.target` takes (besides null, label and one class index):
  - a list of class indices, e.g. `task.target=[3,5]`: every sample is explained once per class;
  - `topK`, e.g. `task.target=top3`: every sample is explained for its K highest-scoring classes.
Each (sample, target) row then gets its own record (`target_rank` = k, the position in the list or
the rank of the class, 0 = the top one) and its own files (`<index>_<name>_t<class>.png`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vizlab.errors import ConfigError, InputError
from vizlab.methods.base import logits_of

TOP_K = re.compile(r"^top(\d+)$")


def is_multi_target(spec: Any) -> bool:
    """True for a list of classes or a "topK" string (several rows per sample)."""
    return (isinstance(spec, Sequence) and not isinstance(spec, str)) or (
        isinstance(spec, str) and TOP_K.match(spec) is not None)


def check_multi_target(spec: Any, num_classes: int) -> None:
    """ConfigError unless `spec` is a non-empty list of distinct in-range class indices or "topK"
    with 1 <= K <= num_classes."""
    if isinstance(spec, str):
        k = int(TOP_K.match(spec).group(1))
        if not 1 <= k <= num_classes:
            raise ConfigError(f"task.target={spec}: K must be between 1 and the model's {num_classes} classes.")
        return
    values = list(spec)
    if not values:
        raise ConfigError("task.target=[] lists no class; give class indices, e.g. task.target=[3,5], or top3.")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < num_classes:
            raise ConfigError(f"task.target={values}: {v!r} is not a class index of this model "
                              f"(valid 0..{num_classes - 1}).")
    if len(set(values)) != len(values):
        raise ConfigError(f"task.target={values} lists a class twice; list each class once.")


def top_k_targets(model: nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) long: each sample's k highest-scoring classes, best first (one no-grad forward)."""
    with torch.no_grad():
        logits = logits_of(model(x))
    if not 1 <= k <= logits.shape[1]:
        raise InputError(f"top-{k} targets need 1 <= k <= {logits.shape[1]} (the model's classes).")
    return logits.topk(k, dim=1).indices


def target_table(spec: Any, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, K) long class indices for a list of classes (the same for every sample) or "topK"."""
    if isinstance(spec, str):
        return top_k_targets(model, x, int(TOP_K.match(spec).group(1)))
    classes = torch.as_tensor([int(v) for v in spec], device=x.device).long()
    return classes.expand(x.shape[0], -1)


def repeat_for_targets(x: torch.Tensor, targets: torch.Tensor | Sequence[Sequence[int]]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, ...) and targets (N, K) → rows x (N·K, ...) and targets (N·K,), row n·K + k = (n, k)."""
    t = torch.as_tensor(targets, device=x.device).long()
    if t.dim() != 2 or t.shape[0] != x.shape[0]:
        raise InputError(f"targets must be (N, K) with N = {x.shape[0]} samples; got shape {tuple(t.shape)}.")
    return x.repeat_interleave(t.shape[1], dim=0), t.reshape(-1)


def expand_batch(spec: Any, batch: dict[str, Any], x: torch.Tensor, model: nn.Module
                 ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """The explain loop's batch with every sample repeated once per target: (batch rows — every
    tensor and list field repeated, plus "target_rank" (N·K,) —, x rows, targets (N·K,))."""
    table = target_table(spec, model, x)
    k = table.shape[1]
    x_rows, t_rows = repeat_for_targets(x, table)
    sample = torch.arange(x.shape[0]).repeat_interleave(k)
    rows: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == x.shape[0]:
            rows[key] = value[sample.to(value.device)]
        elif isinstance(value, (list, tuple)) and len(value) == x.shape[0]:
            rows[key] = [value[i] for i in sample.tolist()]
        else:
            rows[key] = value
    rows["target_rank"] = torch.arange(k).repeat(x.shape[0])
    return rows, x_rows, t_rows
