"""vizlab: explain image and video CNN classifiers, from Python or from Hydra configs."""

from vizlab import methods
from vizlab.api import evaluate, explain, load_model
from vizlab.errors import VizlabError
from vizlab.methods import available_methods
from vizlab.models import available_models

__version__ = "0.1.0"
__all__ = ["VizlabError", "available_methods", "available_models", "evaluate", "explain", "load_model", "methods"]
