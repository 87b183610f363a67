"""DataModule for the explain loop: any map-style dataset, each item tagged with its global index.

Under DDP every rank gets a disjoint, *unpadded* share of the indices (rank, rank + world, ...),
so each sample is explained and scored exactly once and metrics equal the single-process values.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class IndexedDataset(Dataset):
    """Adds "index" (position in the dataset) to every dict item."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "index": index}


class UnpaddedDistributedSampler(Sampler[int]):
    """Indices rank, rank + world_size, ... — no padding, no shuffling."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


class ExplainDataModule(pl.LightningDataModule):
    """Wraps a dataset for `trainer.test`; batches of dicts with "image", "label", "name", "index"."""

    def __init__(self, dataset: Dataset, batch_size: int = 8, num_workers: int = 0) -> None:
        super().__init__()
        self.dataset = IndexedDataset(dataset)
        self.batch_size, self.num_workers = batch_size, num_workers

    def test_dataloader(self) -> DataLoader:
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        sampler = UnpaddedDistributedSampler(len(self.dataset), rank, world)
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=False,
                          pin_memory=torch.cuda.is_available())
