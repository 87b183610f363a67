"""Image datasets and overlays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vizlab.data import ImageFolder, SingleImage, build_dataset, preprocess
from vizlab.errors import ConfigError, InputError
from vizlab.viz import colorize, frame_strip, overlay


def write_image(path, color, size=(40, 60)):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((*size, 3), np.uint8)
    img[:] = color
    cv2.imwrite(str(path), img[:, :, ::-1])


def test_image_folder_labels_and_names(tmp_path):
    write_image(tmp_path / "285" / "a.png", (255, 0, 0))
    write_image(tmp_path / "285" / "b.jpg", (0, 255, 0))
    write_image(tmp_path / "967" / "c.png", (0, 0, 255))
    (tmp_path / "967" / "notes.txt").write_text("ignored")
    ds = ImageFolder(tmp_path, size=32)
    assert len(ds) == 3 and ds.labels == [285, 285, 967]  # numeric folders are class indices
    item = ds[0]
    assert item["name"] == "285/a" and item["image"].shape == (3, 32, 32)
    assert torch.allclose(item["image"][0], torch.ones(32, 32), atol=1 / 255)  # red read as RGB
    write_image(tmp_path / "cats" / "d.png", (9, 9, 9))
    mixed = ImageFolder(tmp_path, size=32)  # one non-numeric folder: fall back to sorted indices
    assert mixed.class_names == ["285", "967", "cats"] and mixed.labels == [0, 0, 1, 2]


def test_image_folder_named_classes_use_sorted_index(tmp_path):
    write_image(tmp_path / "dog" / "a.png", (1, 2, 3))
    write_image(tmp_path / "cat" / "b.png", (1, 2, 3))
    ds = ImageFolder(tmp_path, size=16)
    assert ds.class_names == ["cat", "dog"] and ds.labels == [0, 1] and ds.names == ["cat/b", "dog/a"]


def test_dataset_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        ImageFolder(tmp_path / "missing", size=16)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ConfigError, match="No images"):
        ImageFolder(tmp_path / "empty", size=16)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(InputError, match="corrupt"):
        SingleImage(bad, size=16)
    with pytest.raises(ConfigError, match="needs dataset.root"):
        build_dataset({"name": "image_folder", "root": None}, 16)
    with pytest.raises(ConfigError, match="video model"):
        build_dataset({"name": "samples", "images": ["coffee"]}, 16, is_video=True)
    with pytest.raises(ConfigError, match="resize"):
        preprocess(np.zeros((8, 8, 3), np.uint8), 4, resize="stretch")


def test_preprocess_modes():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 100:] = 255  # right half white
    squash = preprocess(img, 64)
    crop = preprocess(img, 64, resize="center_crop")
    assert squash.shape == crop.shape == (3, 64, 64)
    assert squash[:, :, :30].max() < 0.05 and squash[:, :, 34:].min() > 0.95  # whole image kept
    assert crop[:, :, :28].max() < 0.05 and crop[:, :, 36:].min() > 0.95  # centre kept, edges cropped


def test_overlay_alpha_follows_saliency():
    image = np.full((8, 8, 3), 100, np.uint8)
    assert np.array_equal(overlay(image, np.zeros((8, 8))), image)  # no saliency: photo unchanged
    full = overlay(image, np.ones((8, 8)))
    assert np.array_equal(full, colorize(np.ones((8, 8))))  # full saliency: pure colour (JET red)
    assert tuple(full[0, 0]) == (128, 0, 0)  # top of the JET scale is dark red
    half = overlay(image, np.full((4, 4), 0.5))  # map resized to the image
    assert half.shape == image.shape


def test_frame_strip_layout():
    frames = [np.full((4, 5, 3), i, np.uint8) for i in range(10)]
    strip = frame_strip(frames, per_row=4, gap=1)
    assert strip.shape == (3 * 4 + 2, 4 * 5 + 3, 3)
    assert strip[5, 6, 0] == 5  # second row, second column holds frame 5
