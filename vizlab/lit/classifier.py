"""`ClassifierModule`: train any classifier network with cross-entropy under Lightning.

Batches are dicts {"image": (N, 3, H, W) or (N, 3, T, H, W) in [0, 1] (float or uint8),
"label": (N,) long}; the module normalises them with (x - mean) / std, as `ZooModel.normalize`
does at explain time, so the saved `net` state dict drops straight into the zoo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from vizlab.errors import ConfigError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("onecycle", "cosine", "none")


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of `net` (logits (N, num_classes)).

    optimizer: "adamw" (default) or "sgd" (momentum 0.9, nesterov); schedule: "onecycle"
    (default, per step), "cosine" (per step, to 0) or "none". flips: random horizontal and
    vertical flips of training batches (use only when flipping never changes the class).
    Logs train/loss, train/acc (per epoch), val/loss, val/acc.
    """

    def __init__(self, net: nn.Module, num_classes: int, lr: float = 3e-3, weight_decay: float = 1e-4,
                 optimizer: str = "adamw", schedule: str = "onecycle",
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                 flips: bool = False) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
        if lr <= 0:
            raise ConfigError(f"task.lr must be > 0, got {lr}.")
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images or (N, 3, T, H, W) clips, uint8 or float in [0, 1] → normalised float."""
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(images))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, y = self.normalize(batch["image"]), batch["label"]
        if self.hparams.flips:
            n = x.shape[0]
            h = torch.rand(n, device=x.device) < 0.5
            v = torch.rand(n, device=x.device) < 0.5
            per_sample = (-1,) + (1,) * (x.dim() - 1)
            x = torch.where(h.view(per_sample), x.flip(-1), x)
            x = torch.where(v.view(per_sample), x.flip(-2), x)
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        self.val_acc(logits, batch["label"])
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = self.net.parameters()
        if hp.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=0.9, nesterov=True, weight_decay=hp.weight_decay)
        if hp.schedule == "none":
            return opt
        steps = int(self.trainer.estimated_stepping_batches)
        if hp.schedule == "onecycle":
            if steps < 4:  # too short for a warm-up phase: constant learning rate
                return opt
            # at least two warm-up steps, or OneCycleLR divides by a zero-length phase
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp.lr, total_steps=steps,
                                                        pct_start=max(0.25, 2.5 / steps))
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
