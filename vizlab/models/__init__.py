"""Model zoo: `load_model(name, checkpoint=None)` → frozen `ZooModel`."""

from vizlab.models.wrapper import ModelInfo, ZooModel
from vizlab.models.zoo import ZOO, ModelSpec, available_models, load_model, read_checkpoint, register_model

__all__ = ["ZOO", "ModelInfo", "ModelSpec", "ZooModel", "available_models", "load_model",
           "read_checkpoint", "register_model"]
