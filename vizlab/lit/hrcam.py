"""Lightning training of the HR-CAM models: `HRCAMModule` (stage "half" or "full") and its callbacks.

Stage "half" trains the whole HalfModel with cross-entropy. Stage "full" trains only the
expansion path of a FullModel whose classifier was copied from the half model and frozen
(`FullModel.freeze_classifier`): loss = recon_weight · MSE(reconstruction, network input) +
ce_weight · CE (1:1 as in the original; the CE has no trainable influence, it is logged).

Batches are dicts {"image": (N, 3, S, S) uint8 or float in [0, 1], "label": (N,) long}. Training
images are augmented in [0, 1] space (the original's imgaug recipe, batched on the device, see
`random_affine`) and then normalised with the model's mean and std.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from vizlab.errors import ConfigError
from vizlab.io import write_bytes_atomic, write_json_atomic
from vizlab.models.hrcam import FullModel, HalfModel

OPTIMIZERS = ("adadelta", "adamw", "sgd")
SCHEDULES = ("plateau", "none")
STAGES = ("half", "full")
AUGMENT_KEYS = ("p", "scale", "translate", "rotate", "shear", "hflip")


def check_augment(augment: dict[str, Any] | None) -> dict[str, Any] | None:
    """Validate task.augment (None or {} disables augmentation)."""
    if not augment:
        return None
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise ConfigError(f"task.augment has unknown key(s) {unknown}; valid: {', '.join(AUGMENT_KEYS)}.")
    out = {"p": 0.5, "scale": (1.0, 1.0), "translate": 0.0, "rotate": 0.0, "shear": 0.0, "hflip": 0.0, **augment}
    for key in ("p", "hflip"):
        if not 0 <= float(out[key]) <= 1:
            raise ConfigError(f"task.augment.{key} is a probability in [0, 1], got {out[key]}.")
    scale = out["scale"]
    if not (isinstance(scale, Sequence) and len(scale) == 2 and 0 < float(scale[0]) <= float(scale[1])):
        raise ConfigError(f"task.augment.scale must be [low, high] with 0 < low <= high, got {scale}.")
    if not 0 <= float(out["translate"]) < 1:
        raise ConfigError(f"task.augment.translate is a fraction of the side in [0, 1), got {out['translate']}.")
    out["scale"] = (float(scale[0]), float(scale[1]))
    return out


def random_affine(x: torch.Tensor, p: float = 0.5, scale: tuple[float, float] = (0.9, 1.1),
                  translate: float = 0.2, rotate: float = 180.0, shear: float = 5.0, hflip: float = 0.5,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The original's augmentation, batched: with probability p an affine map (scale per axis in
    `scale`, translation ±translate of the side, rotation ±rotate°, shear ±shear°, bilinear, zero
    fill), then a horizontal flip with probability hflip. x: (N, C, H, W) float; returns a new tensor.
    (imgaug picks nearest or bilinear order at random; this always interpolates bilinearly.)
    """
    n, dev = x.shape[0], x.device

    def uniform(lo: float, hi: float, size: tuple[int, ...] = (n,)) -> torch.Tensor:
        return torch.rand(size, device=dev, generator=generator) * (hi - lo) + lo

    apply = torch.rand(n, device=dev, generator=generator) < p
    sx, sy = uniform(*scale), uniform(*scale)
    tx, ty = uniform(-translate, translate) * 2, uniform(-translate, translate) * 2  # [-1, 1] coordinates
    rot, sh = torch.deg2rad(uniform(-rotate, rotate)), torch.deg2rad(uniform(-shear, shear))
    cos, sin, tan = rot.cos(), rot.sin(), sh.tan()
    forward = torch.zeros(n, 3, 3, device=dev)
    # forward map: rotate · shear · scale, then translate (output = M · input)
    forward[:, 0, 0] = cos * sx
    forward[:, 0, 1] = (cos * tan - sin) * sy
    forward[:, 1, 0] = sin * sx
    forward[:, 1, 1] = (sin * tan + cos) * sy
    forward[:, 0, 2], forward[:, 1, 2], forward[:, 2, 2] = tx, ty, 1
    eye = torch.eye(3, device=dev).expand(n, 3, 3)
    forward = torch.where(apply.view(-1, 1, 1), forward, eye)
    theta = torch.linalg.inv(forward)[:, :2]  # grid_sample maps output positions to input positions
    flip = torch.rand(n, device=dev, generator=generator) < hflip
    theta[:, 0] = torch.where(flip.view(-1, 1), -theta[:, 0], theta[:, 0])  # x_in = -(...): a mirror
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class HRCAMModule(pl.LightningModule):
    """Train a HalfModel (stage "half") or the expansion path of a FullModel (stage "full").

    optimizer: "adadelta" (default; the original's Keras defaults lr 1.0, rho 0.95, eps 1e-7),
    "adamw" or "sgd" (momentum 0.9, nesterov). weight_decay: decoupled for adamw, else added to
    the gradient of conv/linear kernels only (2e-4 = Keras' l2(1e-4) penalty). schedule "plateau":
    ReduceLROnPlateau on the epoch's train/loss (factor √0.1, patience 10, min_lr 1e-5: the
    original's callback) or "none". Logs train/loss, train/ce, train/acc, val/loss, val/ce, val/acc
    (and train/recon, val/recon in stage "full").
    """

    def __init__(self, net: HalfModel, stage: str = "half", optimizer: str = "adadelta", lr: float = 1.0,
                 rho: float = 0.95, weight_decay: float = 2e-4, schedule: str = "plateau",
                 plateau_factor: float = math.sqrt(0.1), plateau_patience: int = 10, min_lr: float = 1e-5,
                 augment: dict[str, Any] | None = None, recon_weight: float = 1.0, ce_weight: float = 1.0,
                 channels_last: bool = False) -> None:
        super().__init__()
        if stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {stage!r}.")
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"task.optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
        if schedule not in SCHEDULES:
            raise ConfigError(f"task.schedule must be one of {SCHEDULES}, got {schedule!r}.")
        if not lr > 0:
            raise ConfigError(f"task.lr must be > 0, got {lr}.")
        if not 0 < plateau_factor < 1:
            raise ConfigError(f"task.plateau_factor must be in (0, 1), got {plateau_factor}.")
        if stage == "full" and not isinstance(net, FullModel):
            raise ConfigError("stage 'full' trains a FullModel's expansion path; got a HalfModel.")
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.stage = stage
        self.augment = check_augment(augment)
        cfg = net.config
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        if stage == "full":
            net.freeze_classifier(True)
        if channels_last:
            net.to(memory_format=torch.channels_last)
        self.train_acc = MulticlassAccuracy(cfg.num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(cfg.num_classes, average="micro")

    def to01(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() / 255 if images.dtype == torch.uint8 else images.float()

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        x = (x01 - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(self.to01(images)))

    def _losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        out = self.net.features(x)
        ce = F.cross_entropy(out["logits"], y)
        parts = {"ce": ce}
        if self.stage == "full":
            parts["recon"] = F.mse_loss(out["reconstruction"].float(), x.float())
            loss = self.hparams.recon_weight * parts["recon"] + self.hparams.ce_weight * ce
        else:
            loss = ce
        return loss, parts, out["logits"]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x01 = self.to01(batch["image"])
        if self.augment is not None:
            x01 = random_affine(x01, **self.augment)
        loss, parts, logits = self._losses(self.normalize(x01), batch["label"])
        self.train_acc(logits, batch["label"])
        n = x01.shape[0]
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        for key, value in parts.items():
            self.log(f"train/{key}", value, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = self.normalize(self.to01(batch["image"]))
        loss, parts, logits = self._losses(x, batch["label"])
        self.val_acc(logits, batch["label"])
        n = x.shape[0]
        self.log("val/loss", loss, prog_bar=True, batch_size=n, sync_dist=True)
        for key, value in parts.items():
            self.log(f"val/{key}", value, batch_size=n, sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        trainable = [(k, p) for k, p in self.net.named_parameters() if p.requires_grad]
        decay = [p for k, p in trainable if p.dim() > 1]
        other = [p for k, p in trainable if p.dim() <= 1]
        wd = float(hp.weight_decay)
        groups = [{"params": decay, "weight_decay": wd}, {"params": other, "weight_decay": 0.0}]
        if hp.optimizer == "adadelta":
            opt = torch.optim.Adadelta(groups, lr=hp.lr, rho=hp.rho, eps=1e-7)
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        else:
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=0.9, nesterov=True)
        if hp.schedule == "none":
            return opt
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=hp.plateau_factor,
                                                           patience=hp.plateau_patience, min_lr=hp.min_lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "train/loss", "interval": "epoch"}}


# --- callbacks ---------------------------------------------------------------------------------
def cam_panels(net: HalfModel, images01: torch.Tensor, class_names: Sequence[str] = (),
               labels: torch.Tensor | None = None) -> tuple[list[np.ndarray], list[str]]:
    """One uint8 RGB panel per image: image | low-res CAM overlay [| high-res CAM overlay], with captions.

    CAMs of the predicted class, min-max normalised per map for display (low: bilinear to the input).
    """
    import cv2

    from vizlab.methods.base import minmax, upsample
    from vizlab.viz.overlay import overlay, to_uint8_image

    mean = torch.tensor(net.config.mean, device=images01.device).view(1, -1, 1, 1)
    std = torch.tensor(net.config.std, device=images01.device).view(1, -1, 1, 1)
    was_training = net.training
    net.eval()
    try:
        cams = net.generate_cams(((images01 - mean) / std).to(next(net.parameters()).device))
    finally:
        net.train(was_training)
    size = images01.shape[-2:]
    low = minmax(upsample(cams["low"].float(), size)).cpu()
    high = minmax(cams["high"].float()).cpu() if "high" in cams else None
    probs = cams["logits"].float().softmax(1).cpu()
    panels, captions = [], []
    scale = max(1, 128 // size[0])
    for i in range(images01.shape[0]):
        img = to_uint8_image(images01[i])
        tiles = [img, overlay(img, low[i].numpy())] + ([overlay(img, high[i].numpy())] if high is not None else [])
        panel = np.concatenate(tiles, axis=1)
        if scale > 1:
            panel = cv2.resize(panel, (panel.shape[1] * scale, panel.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
        c = int(cams["classes"][i])
        name = class_names[c] if c < len(class_names) else str(c)
        truth = ""
        if labels is not None:
            t = int(labels[i])
            truth = f" (true {class_names[t] if t < len(class_names) else t})"
        panels.append(panel)
        captions.append(f"{name} p={float(probs[i, c]):.2f}{truth}: image | low" + (" | high" if high is not None else ""))
    return panels, captions


class CAMSamples(pl.Callback):
    """After every validation epoch, log the CAMs of fixed validation images as pictures
    (key "cams") to every logger and write `<out_dir>/cams/epoch_XXX.png` (rank 0 only). Under DDP
    the pictures are only written (`log_cam_files` logs them from the launching process)."""

    def __init__(self, images01: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str],
                 out_dir: Path | None = None) -> None:
        self.images01, self.labels, self.class_names = images01, labels, list(class_names)
        self.out_dir = Path(out_dir) if out_dir is not None else None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: HRCAMModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or len(self.images01) == 0:
            return
        from vizlab.loggers import log_images

        panels, captions = cam_panels(pl_module.net, self.images01.to(pl_module.device), self.class_names,
                                      self.labels)
        if trainer.world_size == 1:  # spawned DDP workers lose W&B media: the launcher logs the PNGs instead
            log_images(trainer.loggers, "cams", panels, captions, step=trainer.global_step)
        if self.out_dir is not None:
            import cv2

            grid = np.concatenate(panels, axis=0)
            ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
            if ok:
                write_bytes_atomic(self.out_dir / "cams" / f"epoch_{trainer.current_epoch:03d}.png", png.tobytes())


class EpochHistory(pl.Callback):
    """Append every epoch's logged metrics, the learning rate and the training throughput to `<path>`
    (JSON list, rank 0). train_seconds / train_images: cumulative wall time of the training batches
    only (no validation) and images seen by all ranks. A file, so it also reaches the launching
    process under ddp_spawn."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []
        self.seconds, self.images, self._start = 0.0, 0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.seconds += time.perf_counter() - self._start
        self.images += len(batch["label"]) * trainer.world_size

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        row: dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1})
        if trainer.optimizers:
            row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        row["train_seconds"], row["train_images"] = self.seconds, self.images
        self.rows.append(row)
        write_json_atomic(self.path, self.rows)


def log_cam_files(loggers: list, out_dir: Path) -> int:
    """Log `<out_dir>/cams/epoch_XXX.png` (one picture per epoch: rows = samples, image | low [| high])
    under "cams"; returns how many. What DDP runs use, since spawned workers lose W&B media."""
    import cv2

    from vizlab.loggers import log_images

    files = sorted((Path(out_dir) / "cams").glob("epoch_*.png"))
    for path in files:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        log_images(loggers, "cams", [image], [f"epoch {int(path.stem.split('_')[1])}: image | low | high"])
    return len(files)


__all__ = ["CAMSamples", "EpochHistory", "log_cam_files", "HRCAMModule", "cam_panels", "check_augment", "random_affine"]
