"""Model zoo: `load_model(name, checkpoint=None)` → frozen `ZooModel`."""

from vizlab.models.synthetic import SHAPES_CNN_SPEC
from vizlab.models.wrapper import ModelInfo, ZooModel
from vizlab.models.zoo import ZOO, ModelSpec, available_models, load_model, read_checkpoint, register_model

register_model("shapes_cnn", SHAPES_CNN_SPEC)

__all__ = ["ZOO", "ModelInfo", "ModelSpec", "ZooModel", "available_models", "load_model",
           "read_checkpoint", "register_model"]
