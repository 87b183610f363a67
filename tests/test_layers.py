"""Layer names as the user sees them: `net.bn2` (a zoo model's named_modules()) and `bn2` both resolve."""

from __future__ import annotations

import pytest
import torch

import vizlab
from vizlab.cli import main as cli_main
from vizlab.errors import LayerNotFoundError
from vizlab.layers import list_layers, resolve_layer


def test_both_spellings_resolve_to_the_same_module(effnet):
    wrapped = [(n, m) for n, m in effnet.named_modules() if n.startswith("net.")]
    assert len(wrapped) == len(list_layers(effnet)) > 50
    for name, module in wrapped:
        assert resolve_layer(effnet, name) is module
        assert resolve_layer(effnet, name[len("net."):]) is module


def test_methods_take_the_wrapped_name(effnet):
    x = torch.randn(1, 3, 96, 96)
    a = vizlab.explain(effnet, x, 285, method="gradcam", layer="net.blocks.5")
    b = vizlab.explain(effnet, x, 285, method="gradcam", layer="blocks.5")
    assert torch.equal(a, b)


def test_unknown_names_suggest_the_close_ones(effnet, tiny2d):
    with pytest.raises(LayerNotFoundError, match="Did you mean: 'bn2'"):
        resolve_layer(effnet, "net.bn3")
    with pytest.raises(LayerNotFoundError, match="not found"):
        resolve_layer(effnet, "net.")
    with pytest.raises(LayerNotFoundError, match="not found"):  # a plain nn.Module has no `net.` spelling
        resolve_layer(tiny2d, "net.features.0")


def test_vizlab_layers_prints_names_that_resolve(capsys, recwarn):
    cli_main(["layers", "shapes_cnn"])
    out = capsys.readouterr()
    names = out.out.split()
    model = vizlab.load_model("shapes_cnn", pretrained=False)
    assert names == list_layers(model) and "features" in names
    for name in names:
        resolve_layer(model, name)
        resolve_layer(model, f"net.{name}")
    assert "net.NAME" in out.err
    cli_main(["layers", "shapes_cnn", "net.fea"])  # the filter also matches the wrapped spelling
    assert capsys.readouterr().out.split() == [n for n in names if n.startswith("fea")]
