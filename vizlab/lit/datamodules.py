"""`ShapesDataModule`: train/val splits of SyntheticShapes, generated once and held in memory.

Batches are dicts {"image": (N, 3, S, S) uint8, "label": (N,) long}; `ClassifierModule`
scales them to [0, 1] and normalises (mean = std = 0.5 for shapes_cnn).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from vizlab.data.synthetic_shapes import CLASS_NAMES, make_split
from vizlab.errors import ConfigError


class TensorDictDataset(Dataset):
    """Index-aligned tensors served as dicts {key: tensor[i]}."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        sizes = {len(t) for t in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(f"tensors differ in length: { {k: len(t) for k, t in tensors.items()} }")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: t[index] for k, t in self.tensors.items()}


class ShapesDataModule(pl.LightningDataModule):
    """num_train images from seed `train_seed`, num_val from `val_seed` (must differ), side `size`."""

    def __init__(self, num_train: int = 4000, num_val: int = 1000, size: int = 64, train_seed: int = 0,
                 val_seed: int = 1, batch_size: int = 64, classes: Sequence[str] = CLASS_NAMES,
                 num_workers: int = 0) -> None:
        super().__init__()
        if train_seed == val_seed:
            raise ConfigError(f"train and val seeds must differ (both {train_seed}), or val would repeat train.")
        if batch_size < 1:
            raise ConfigError(f"task.batch_size must be >= 1, got {batch_size}.")
        self.num_train, self.num_val, self.size = num_train, num_val, size
        self.train_seed, self.val_seed = train_seed, val_seed
        self.batch_size, self.classes, self.num_workers = batch_size, tuple(classes), num_workers
        self.train_set: TensorDictDataset | None = None
        self.val_set: TensorDictDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            images, labels, _ = make_split(self.num_train, self.size, self.train_seed, self.classes)
            self.train_set = TensorDictDataset(image=images, label=labels)
        if self.val_set is None:
            images, labels, _ = make_split(self.num_val, self.size, self.val_seed, self.classes)
            self.val_set = TensorDictDataset(image=images, label=labels)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=max(self.batch_size, 256), num_workers=self.num_workers)
