"""DataModule for the explain loop: any map-style dataset, each item tagged with its global index.

Under DDP every rank gets a disjoint, *unpadded* share of the indices (rank, rank + world, ...),
so each sample is explained and scored exactly once and metrics equal the single-process values.

Clips that fail to load with dataset.skip_bad=true come back from the dataset as placeholders
(a dict with a "skipped" reason and no "image", see `vizlab.data.video`): `collate_loaded` leaves
them out of the batch, and `SkipEmptyBatches` leaves out a batch whose every item was skipped, so
`test_step` only ever sees batches with at least one sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from vizlab.data.video import SKIPPED


class IndexedDataset(Dataset):
    """Adds "index" (position in the dataset) to every dict item."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "index": index}


def collate_loaded(items: list[dict[str, Any]]) -> dict[str, Any]:
    """default_collate of the items that loaded, plus "skipped": the names of those that did not.

    A batch in which every item was skipped is {"skipped": [names]} only (no "image").
    """
    good = [item for item in items if SKIPPED not in item]
    skipped = [item["name"] for item in items if SKIPPED in item]
    batch = default_collate(good) if good else {}
    if skipped or not good:
        batch["skipped"] = skipped
    return batch


class SkipEmptyBatches:
    """Iterates a DataLoader but leaves out batches without an "image" (every clip was skipped).
    len() is the DataLoader's (an upper bound)."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (batch for batch in self.loader if "image" in batch)


class UnpaddedDistributedSampler(Sampler[int]):
    """Indices rank, rank + world_size, ... — no padding, no shuffling."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


class ExplainDataModule(pl.LightningDataModule):
    """Wraps a dataset for `trainer.test`; batches of dicts with "image", "label", "name", "index"
    (and "skipped" when clips failed to load). Defaults: batch_size 8, num_workers 0.

    Which clips were skipped is derived afterwards from the records (`vizlab.tasks.explain.
    skipped_samples`: the indices with no record), which also covers DDP ranks.
    """

    def __init__(self, dataset: Dataset, batch_size: int = 8, num_workers: int = 0) -> None:
        super().__init__()
        self.dataset = IndexedDataset(dataset)
        self.batch_size, self.num_workers = batch_size, num_workers

    def test_dataloader(self) -> SkipEmptyBatches:
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        sampler = UnpaddedDistributedSampler(len(self.dataset), rank, world)
        return SkipEmptyBatches(DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler,
                                           num_workers=self.num_workers, persistent_workers=False,
                                           collate_fn=collate_loaded, pin_memory=torch.cuda.is_available()))
