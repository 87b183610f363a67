"""Building blocks of the extremal-perturbation family (image EP, 2D-EP, 3D-EP, STEP).

pyramid.py         perturbation pyramids (blur / fade) and their per-pixel interpolation
mask_generator.py  TorchRay's smooth mask generator (parameters → smooth masks)
objectives.py      rewards, the area regulariser, STEP's core (smoothness) term
optimise.py        the batched SGD loop: samples × areas in one forward/backward per iteration
method.py          the shared AttributionMethod (targets, pyramid set-up, chunking, result object)
options.py         the options as frozen dataclasses with per-method defaults, checked on creation
scale.py           step / sigma / max_blur from the input size, and the too-coarse warning
oracle.py          the optimality check against an oracle (object) mask
"""

from vizlab.methods.perturbation.mask_generator import MaskGenerator
from vizlab.methods.perturbation.objectives import CoreLoss, area_loss, core_kernel, core_topk, reward_loss
from vizlab.methods.perturbation.optimise import EarlyStopping, Objective, OptimisationResult, Schedule, optimise_masks
from vizlab.methods.perturbation.pyramid import PerturbationPyramid, gaussian_blur

__all__ = ["CoreLoss", "EarlyStopping", "MaskGenerator", "Objective", "OptimisationResult", "PerturbationPyramid", "Schedule",
           "area_loss", "core_kernel", "core_topk", "gaussian_blur", "optimise_masks", "reward_loss"]
