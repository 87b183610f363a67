"""Lightning data modules for training: in-memory tensor splits (synthetic sets) and class-folder trees.

Batches are dicts {"image": (N, 3, S, S) or (N, 3, T, S, S) uint8, "label": (N,) long};
`ClassifierModule` scales them to [0, 1] and normalises (mean = std = 0.5 for the synthetic nets).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

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


class TensorSplitDataModule(pl.LightningDataModule):
    """Train/val splits given as tensors {"image": (N, 3, S, S) or (N, 3, T, S, S) uint8, "label": (N,) long},
    held in memory (generated before the Trainer starts, so the module pickles for ddp_spawn)."""

    def __init__(self, train: dict[str, torch.Tensor], val: dict[str, torch.Tensor], batch_size: int = 64,
                 num_workers: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"task.batch_size must be >= 1, got {batch_size}.")
        self.train_set, self.val_set = TensorDictDataset(**train), TensorDictDataset(**val)
        self.batch_size, self.num_workers = batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=max(self.batch_size, 256), num_workers=self.num_workers)


class FolderDataModule(pl.LightningDataModule):
    """An ImageNet-style tree with `root/train/<class>/<image>` and `root/test/<class>/<image>`
    (the test split validates). Both splits must have the same class folders. Batches are dicts
    {"image": (N, 3, size, size) float in [0, 1], "label", "name"}."""

    def __init__(self, root: str, size: int, batch_size: int = 16, resize: str = "squash",
                 num_workers: int = 0) -> None:
        super().__init__()
        from pathlib import Path

        from vizlab.data.images import ImageFolder

        root_path = Path(root).expanduser()
        for split in ("train", "test"):
            if not (root_path / split).is_dir():
                raise ConfigError(f"dataset.root={root_path} must hold train/ and test/ class-folder trees "
                                  f"(root/train/<class>/<image>, root/test/<class>/<image>); {split}/ is missing.")
        if batch_size < 1:
            raise ConfigError(f"task.batch_size must be >= 1, got {batch_size}.")
        self.train_set = ImageFolder(root_path / "train", size, resize)
        self.val_set = ImageFolder(root_path / "test", size, resize)
        if self.train_set.class_names != self.val_set.class_names:
            only = sorted(set(self.train_set.class_names) ^ set(self.val_set.class_names))
            raise ConfigError(f"train/ and test/ under {root_path} have different class folders (e.g. {only[:5]}); "
                              "both splits need the same classes.")
        if len(self.train_set) < batch_size:
            raise ConfigError(f"{root_path / 'train'} has {len(self.train_set)} images, fewer than "
                              f"task.batch_size={batch_size}.")
        self.class_names = list(self.train_set.class_names)
        self.batch_size, self.num_workers = batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)
