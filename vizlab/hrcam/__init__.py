"""HR-CAM (Tagaris et al., ICIP 2019) refinement pipeline: pure, batched functions on tensors.

`refine(image, low, high, params)` returns every step by name; `PipelineParams` holds the defaults.
"""

from vizlab.hrcam.pipeline import STEP_KEYS, PipelineParams, refine

__all__ = ["STEP_KEYS", "PipelineParams", "refine"]
