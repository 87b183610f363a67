"""A Lightning callback showing one progress bar that counts samples (not batches) through
`trainer.test`, on rank 0 only (its share of the samples under DDP), via `vizlab.progress`."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class SampleProgress(pl.Callback):
    """tqdm bar over the `total` samples of the test set (`desc` e.g. "gradcam · efficientnet_lite0")."""

    def __init__(self, total: int, desc: str = "explain") -> None:
        self.total, self.desc = total, desc
        self.bar: Any = None

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from vizlab.progress import progress_bar

        share = len(range(trainer.global_rank, self.total, trainer.world_size))
        self.bar = progress_bar(total=share, desc=self.desc, unit="sample", leave=True, dynamic_ncols=True)

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.bar is not None:
            self.bar.update(len(batch["image"]) if isinstance(batch, dict) and "image" in batch else 1)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.on_test_end(trainer, pl_module)  # close the bar on Ctrl-C or an error too
