"""The model zoo: a name → builder registry with input size, normalisation and default layers.

`load_model(name, checkpoint=None, num_classes=None)` returns a frozen, eval-mode `ZooModel`.
Only `efficientnet_lite0` has embedded pretrained weights; the others are random-init unless a
checkpoint path is given (nothing is ever downloaded).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from vizlab.errors import CheckpointError, no_embedded_weights, unknown_choice
from vizlab.models.class_names import names_for
from vizlab.models.video3d import video_specs
from vizlab.models.wrapper import ModelInfo, ZooModel
from vizlab.validation import check_number

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one zoo model. `builder(num_classes, pretrained) -> nn.Module`."""

    builder: Callable[[int, bool], nn.Module]
    info: ModelInfo
    dataset: str  # class-name vocabulary: "imagenet", "kinetics400" or "custom"
    has_embedded_weights: bool = False
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None  # checkpoint converter
    # builds the network from a checkpoint that records its own architecture (HR-CAM models):
    # from_state(state, num_classes or None, source) -> nn.Module with the state loaded
    from_state: Callable[[dict[str, torch.Tensor], int | None, str], nn.Module] | None = None


def _torchvision(name: str, video: bool = False, **extra) -> Callable[[int, bool], nn.Module]:
    def build(num_classes: int, pretrained: bool) -> nn.Module:
        if pretrained:
            raise no_embedded_weights(name, f"/path/to/{name}.pth (a torchvision state dict)")
        import torchvision.models as tvm
        import torchvision.models.video as tvv

        return getattr(tvv if video else tvm, name)(weights=None, num_classes=num_classes, **extra)

    return build


def _efficientnet(num_classes: int, pretrained: bool) -> nn.Module:
    from vizlab.models.efficientnet_lite0 import build_efficientnet_lite0

    return build_efficientnet_lite0(num_classes, pretrained)


def _image(name, size, layer, fc, mean=IMAGENET_MEAN, std=IMAGENET_STD, classes=1000) -> ModelInfo:
    return ModelInfo(name, size, mean, std, layer, fc, classes)


def _video(name, layer="layer4", fc="fc") -> ModelInfo:
    return ModelInfo(name, 112, KINETICS_MEAN, KINETICS_STD, layer, fc, 400, frames=16)


ZOO: dict[str, ModelSpec] = {
    "efficientnet_lite0": ModelSpec(
        _efficientnet, _image("efficientnet_lite0", 224, "bn2", "classifier", HALF, HALF), "imagenet",
        has_embedded_weights=True,
    ),
    "resnet18": ModelSpec(_torchvision("resnet18"), _image("resnet18", 224, "layer4", "fc"), "imagenet"),
    "resnet50": ModelSpec(_torchvision("resnet50"), _image("resnet50", 224, "layer4", "fc"), "imagenet"),
    "densenet121": ModelSpec(
        _torchvision("densenet121"), _image("densenet121", 224, "features", "classifier"), "imagenet"
    ),
    "vgg16": ModelSpec(_torchvision("vgg16"), _image("vgg16", 224, "features.29", "classifier.6"), "imagenet"),
    "inception_v3": ModelSpec(
        _torchvision("inception_v3", aux_logits=True, init_weights=True),
        _image("inception_v3", 299, "Mixed_7c", "fc"),
        "imagenet",
    ),
    "r3d_18": ModelSpec(_torchvision("r3d_18", video=True), _video("r3d_18"), "kinetics400"),
    "mc3_18": ModelSpec(_torchvision("mc3_18", video=True), _video("mc3_18"), "kinetics400"),
    "r2plus1d_18": ModelSpec(_torchvision("r2plus1d_18", video=True), _video("r2plus1d_18"), "kinetics400"),
    **video_specs(),  # i3d, tsm, mfnet, resnet3d_50/101/152, resnext3d_101
}


def available_models() -> list[str]:
    return sorted(ZOO)


def register_model(name: str, spec: ModelSpec) -> None:
    """Add a model to the zoo (e.g. from a plugin or a test)."""
    ZOO[name] = spec


_PREFIXES = ("module.", "model.", "net.", "_orig_mod.")


def load_weights_only(path: Path) -> object:
    """torch.load(path, weights_only=True), with one CheckpointError line for a file that is not a
    PyTorch checkpoint or holds pickled Python objects besides tensors (vizlab never unpickles code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a state dict vizlab can load safely: it is not a PyTorch checkpoint, or it holds "
            f"Python objects besides tensors ({type(exc).__name__}). Save the weights with "
            "torch.save(model.state_dict(), path) and pass that file as model.checkpoint."
        ) from exc


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from a .pth/.pt/.ckpt file (plain, {'state_dict': ...} or Lightning)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file not found: {path}. Check model.checkpoint.")
    obj = load_weights_only(path)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors.")
    state = dict(obj)
    changed = True
    while changed:  # strip wrapper prefixes (DataParallel, Lightning, ZooModel)
        changed = False
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def load_state(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` strictly into `net`, with an error that lists what does not fit."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append("shape mismatch " + ", ".join(
                f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:5]))
        raise CheckpointError(
            f"Checkpoint {source} does not fit {type(net).__name__}: {'; '.join(parts)}. "
            "If the head size differs, set model.num_classes to the checkpoint's class count."
        )
    net.load_state_dict(state)


def load_model(
    name: str,
    checkpoint: str | Path | None = None,
    num_classes: int | None = None,
    pretrained: bool | None = None,
    device: str | torch.device = "cpu",
) -> ZooModel:
    """Build zoo model `name`, load weights, freeze it and put it in eval mode on `device`.

    pretrained defaults to True for models with embedded weights and no checkpoint, else False.
    """
    if name not in ZOO:
        raise unknown_choice("model", name, ZOO)
    spec = ZOO[name]
    check_number("model.num_classes", num_classes, low=1, integer=True, optional=True)
    classes = spec.info.num_classes if num_classes is None else int(num_classes)
    if pretrained is None:
        pretrained = spec.has_embedded_weights and checkpoint is None and classes == spec.info.num_classes
    state = read_checkpoint(checkpoint) if checkpoint else None
    if state is not None and spec.convert is not None:
        state = spec.convert(state)
    if state is not None and spec.from_state is not None:
        net = spec.from_state(state, num_classes, str(checkpoint))
    else:
        net = spec.builder(classes, bool(pretrained) and state is None)
        if state is not None:
            load_state(net, state, str(checkpoint))
        elif not pretrained:
            warnings.warn(f"{name}: no checkpoint given, using random weights (set model.checkpoint=PATH).",
                          stacklevel=2)
    decided = dict(getattr(net, "zoo_info", None) or {})  # facts a self-describing checkpoint fixes
    classes = decided.pop("num_classes", classes)
    names = (tuple(decided.pop("class_names", ())) or names_for(classes, spec.dataset)
             or (tuple(spec.info.class_names) if classes == spec.info.num_classes else ()))
    info = replace(spec.info, num_classes=classes, class_names=names, **decided)
    model = ZooModel(net, info).eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
