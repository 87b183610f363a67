"""Class names that ship offline with torchvision's weight enums (no download needed)."""

from __future__ import annotations

from functools import cache


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index-aligned."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


@cache
def kinetics400_classes() -> tuple[str, ...]:
    """The 400 Kinetics-400 class names, index-aligned."""
    from torchvision.models.video import R3D_18_Weights

    return tuple(R3D_18_Weights.KINETICS400_V1.meta["categories"])


def names_for(num_classes: int, dataset: str) -> tuple[str, ...]:
    """Class names for a head of `num_classes` trained on `dataset`, or () if unknown."""
    if dataset == "imagenet" and num_classes == 1000:
        return imagenet_classes()
    if dataset == "kinetics400" and num_classes == 400:
        return kinetics400_classes()
    return ()
