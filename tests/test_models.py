"""Model zoo: the embedded default's predictions, every zoo model's forward, checkpoints, errors."""

from __future__ import annotations

import pytest
import torch

import vizlab
from vizlab.data import SampleImages
from vizlab.errors import CheckpointError, ConfigError, LayerNotFoundError
from vizlab.layers import resolve_layer
from vizlab.models import ZOO, load_model


def test_embedded_model_classifies_skimage_samples(effnet):
    ds = SampleImages(224, ["chelsea", "coffee"])
    x = effnet.normalize(torch.stack([ds[0]["image"], ds[1]["image"]]))
    with torch.no_grad():
        pred = effnet(x).argmax(1).tolist()
    assert pred == [285, 967]
    assert effnet.class_name(285) == "Egyptian cat"
    assert effnet.class_name(967) == "espresso"


def test_embedded_model_is_frozen_eval(effnet):
    assert not effnet.training
    assert not any(p.requires_grad for p in effnet.parameters())


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_forward_and_default_layer(name):
    if name == "efficientnet_lite0":
        model = load_model(name)
    else:
        with pytest.warns(UserWarning, match="random weights"):
            model = load_model(name, pretrained=False)
    info = model.info
    shape = (1, 3, info.frames, 64, 64) if info.is_video else (1, 3, info.input_size, info.input_size)
    with torch.no_grad():
        out = model(torch.zeros(shape))
    assert out.shape == (1, info.num_classes)
    resolve_layer(model, info.default_layer)
    assert isinstance(resolve_layer(model, info.classifier_layer), torch.nn.Linear)
    assert len(info.class_names) == info.num_classes


def test_checkpoint_round_trip_with_prefixes(tmp_path):
    torch.manual_seed(1)
    ref = load_model("resnet18", pretrained=False, num_classes=7)
    # a Lightning-style checkpoint whose keys carry a "model.net." prefix
    state = {f"model.{k}": v for k, v in ref.state_dict().items()}
    path = tmp_path / "r18.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    loaded = load_model("resnet18", checkpoint=str(path), num_classes=7)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ref(x), loaded(x))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model("resnet18", checkpoint=tmp_path / "missing.pth")
    bad = tmp_path / "wrong.pth"
    torch.save(load_model("resnet18", pretrained=False, num_classes=3).net.state_dict(), bad)
    with pytest.raises(CheckpointError, match="num_classes"):
        load_model("resnet18", checkpoint=bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a state dict vizlab can load safely"):
        load_model("resnet18", checkpoint=junk)
    with pytest.raises(CheckpointError, match="never downloads"):
        load_model("resnet50", pretrained=True)


def test_unknown_model_lists_choices():
    with pytest.raises(ConfigError, match="Did you mean: 'resnet50'") as err:
        vizlab.load_model("resnet5O")
    assert "efficientnet_lite0" in str(err.value) and "r2plus1d_18" in str(err.value)


def test_layer_lookup_suggests_candidates(effnet):
    assert resolve_layer(effnet, "blocks.6.0") is effnet.net.blocks[6][0]
    with pytest.raises(LayerNotFoundError, match="Did you mean: 'bn2'") as err:
        resolve_layer(effnet, "bn_2")
    assert "conv_head" in str(err.value)
    with pytest.raises(LayerNotFoundError, match="not part of this model"):
        resolve_layer(effnet, torch.nn.Conv2d(1, 1, 1))
