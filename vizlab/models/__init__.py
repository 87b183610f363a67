"""Model zoo: `load_model(name, checkpoint=None)` → frozen `ZooModel`."""

from vizlab.models.hrcam import HRCAM_FULL_SPEC, HRCAM_HALF_SPEC
from vizlab.models.synthetic import MOTION_CNN16_SPEC, MOTION_CNN_SPEC, SHAPES_CNN_SPEC
from vizlab.models.wrapper import ModelInfo, ZooModel
from vizlab.models.zoo import ZOO, ModelSpec, available_models, load_model, read_checkpoint, register_model

register_model("shapes_cnn", SHAPES_CNN_SPEC)
register_model("hrcam_half", HRCAM_HALF_SPEC)
register_model("hrcam_full", HRCAM_FULL_SPEC)
register_model("motion_cnn", MOTION_CNN_SPEC)
register_model("motion_cnn16", MOTION_CNN16_SPEC)

__all__ = ["ZOO", "ModelInfo", "ModelSpec", "ZooModel", "available_models", "load_model",
           "read_checkpoint", "register_model"]
