"""Datasets: `build_dataset(cfg, model_info)` maps a dataset config onto a torch Dataset."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.utils.data import Dataset

from vizlab.data.images import ImageFolder, SampleImages, SingleImage, preprocess, read_image
from vizlab.errors import ConfigError, unknown_choice

DATASETS = ("samples", "image_folder", "image")


def build_dataset(cfg: Mapping[str, Any], input_size: int, is_video: bool = False) -> Dataset:
    """Dataset named cfg["name"], resized to the model's `input_size`."""
    name = cfg.get("name")
    if name not in DATASETS:
        raise unknown_choice("dataset", str(name), DATASETS)
    if is_video:
        raise ConfigError(f"dataset={name} yields images but the model is a video model; "
                          "pick a 2-D model or a clip dataset.")
    resize = cfg.get("resize", "squash")
    if name == "samples":
        return SampleImages(input_size, list(cfg.get("images") or []), resize)
    if name == "image_folder":
        if not cfg.get("root"):
            raise ConfigError("dataset=image_folder needs dataset.root=/path/to/<class>/<image> tree.")
        return ImageFolder(cfg["root"], input_size, resize)
    if not cfg.get("path"):
        raise ConfigError("dataset=image needs dataset.path=/path/to/image.jpg.")
    return SingleImage(cfg["path"], input_size, resize)


__all__ = ["DATASETS", "ImageFolder", "SampleImages", "SingleImage", "build_dataset", "preprocess", "read_image"]
