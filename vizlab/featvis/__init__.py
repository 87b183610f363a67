"""Class-agnostic feature visualisation ("The Mind's Eye", Stergiou, ICIP 2021): images of what a
layer responds to across a set of images. See docs/featvis.md.

    result = vizlab.featvis.visualise_features(model, images, layer="bn2", clusters=4, iterations=400)
    result.generation.images        # (K, 3, H, W) in [0, 1], one per cluster ("facet")
"""

from vizlab.featvis.api import FeatureVisResult, visualise_features
from vizlab.featvis.clustering import Facets, find_facets
from vizlab.featvis.encoding import FeatureTaps, encode, pool
from vizlab.featvis.fourier import FourierImage, random_transform
from vizlab.featvis.optimise import FourierOptions, GenerateOptions, Generation, generate, loss_terms
from vizlab.featvis.original import BUGS, resolve_bugs
from vizlab.featvis.regularisers import centre_mask, gaussian_blur, tv_bregman
from vizlab.featvis.robust import AdaptiveRobustLoss
from vizlab.featvis.schedules import Octave, linear_value, plan_steps

__all__ = ["BUGS", "AdaptiveRobustLoss", "Facets", "FeatureTaps", "FeatureVisResult", "FourierImage", "FourierOptions",
           "GenerateOptions", "Generation", "Octave", "centre_mask", "encode", "find_facets", "gaussian_blur",
           "generate", "linear_value", "loss_terms", "plan_steps", "pool", "random_transform", "resolve_bugs",
           "tv_bregman", "visualise_features"]
