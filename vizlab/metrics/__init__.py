"""Metrics (torchmetrics, DDP-synced): deletion/insertion and localisation."""

from vizlab.metrics.deletion_insertion import PRESETS, DeletionInsertion, DeletionInsertionConfig
from vizlab.metrics.localisation import (
                                         EnergyPointing,
                                         MaskIoU,
                                         ObjectRecall,
                                         PointingGame,
                                         boxes_to_masks,
                                         energy_pointing,
                                         kept_frames,
                                         mask_iou,
                                         object_recall,
                                         pointing_hits,
)
from vizlab.metrics.substrates import gaussian_blur, make_substrate

__all__ = ["PRESETS", "DeletionInsertion", "DeletionInsertionConfig", "EnergyPointing", "MaskIoU", "ObjectRecall",
           "PointingGame", "boxes_to_masks", "energy_pointing", "gaussian_blur", "kept_frames", "make_substrate",
           "mask_iou", "object_recall", "pointing_hits"]
