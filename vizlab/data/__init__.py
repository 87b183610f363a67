"""Datasets: `build_dataset(cfg, model_info)` maps a dataset config onto a torch Dataset."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.utils.data import Dataset

from vizlab.data.frame_store import FrameStore, pack_frame_store
from vizlab.data.images import DEFAULT_MAX_PIXELS, ImageFolder, SampleImages, SingleImage, preprocess, read_image
from vizlab.data.synthetic_motion import SyntheticMotion, build_synthetic_motion
from vizlab.data.synthetic_shapes import SyntheticShapes, build_synthetic_shapes
from vizlab.data.video import CLIP_DATASETS, FrameFolder, VideoFolder, build_clip_dataset
from vizlab.errors import ConfigError, unknown_choice

IMAGE_DATASETS = ("samples", "image_folder", "image", "synthetic_shapes")
VIDEO_DATASETS = (*CLIP_DATASETS, "synthetic_motion")
DATASETS = (*IMAGE_DATASETS, *VIDEO_DATASETS)


def build_dataset(cfg: Mapping[str, Any], input_size: int, is_video: bool = False,
                  frames: int | None = None) -> Dataset:
    """Dataset named cfg["name"], resized to the model's `input_size` (clips: `frames` long by default)."""
    name = cfg.get("name")
    if name not in DATASETS:
        raise unknown_choice("dataset", str(name), DATASETS)
    if name in VIDEO_DATASETS:
        if not is_video:
            raise ConfigError(f"dataset={name} yields clips (3, T, H, W) but the model is an image model; "
                              "pick a video model (r3d_18, mc3_18, r2plus1d_18, motion_cnn, ...).")
        if name == "synthetic_motion":
            return build_synthetic_motion(cfg, input_size, frames)
        return build_clip_dataset(cfg, input_size, frames)
    if is_video:
        raise ConfigError(f"dataset={name} yields images but the model is a video model; "
                          "pick a 2-D model or a clip dataset.")
    if name == "synthetic_shapes":
        return build_synthetic_shapes(cfg, input_size)
    resize = cfg.get("resize", "squash")
    if name == "samples":
        return SampleImages(input_size, list(cfg.get("images") or []), resize)
    max_pixels = cfg.get("max_pixels") or DEFAULT_MAX_PIXELS
    if name == "image_folder":
        if not cfg.get("root"):
            raise ConfigError("dataset=image_folder needs dataset.root=/path/to/<class>/<image> tree.")
        return ImageFolder(cfg["root"], input_size, resize, max_pixels=max_pixels)
    if not cfg.get("path"):
        raise ConfigError("dataset=image needs dataset.path=/path/to/image.jpg.")
    return SingleImage(cfg["path"], input_size, resize, max_pixels)


__all__ = ["DATASETS", "FrameFolder", "FrameStore", "ImageFolder", "SampleImages", "SingleImage", "SyntheticMotion",
           "SyntheticShapes", "VIDEO_DATASETS",
           "VideoFolder",
           "build_dataset", "pack_frame_store", "preprocess", "read_image"]
