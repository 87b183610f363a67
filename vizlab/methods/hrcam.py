"""`hrcam`: the High-Resolution CAM of a trained HR-CAM FullModel (Tagaris et al., ICIP 2019).

    method = vizlab.methods.build("hrcam", load_model("hrcam_full"), stage="refined")
    saliency = method(x, target)        # (N, H, W) in [0, 1]

One forward pass gives A_low (conv_aux output), A_high (last ConvTranspose output) and the
logits; both CAMs use the classifier weights W[:, c] of the explained class (spec §6.4). `stage`:

- "low": A_low · W[:, c] (input/16 per side), bilinearly up-sampled, min-max normalised;
- "high": A_high · W[:, c] at input resolution, min-max normalised;
- "refined" (default): the merged map of the refinement pipeline (`vizlab.hrcam.pipeline.refine`:
  blur, Sobel, ROI, region growing from focal points, hole filling, blend with the low CAM),
  already in [0, 1]. `pipeline` passes PipelineParams overrides, e.g. {"hole_area": 21} at 64 px.

Min-max without ReLU, as HR-CAM's pipeline treats its maps (the `cam` method applies a ReLU
first). raw: the signed low map ("low"), the high map ("high") or the merged map ("refined");
extras: "low" and "high" (N, h, w) / (N, H, W), and for "refined" "pipeline": every step `refine`
returned (a dict of tensors of leading dim N). "low" also works with a HalfModel.

In the explain loop, stage "refined" with `figures=True` (default) draws each sample's pipeline step
by step (`sample_figures` → "pipeline", the 12-panel figure of `vizlab.viz.pipeline_figure`): saved
as heatmaps/<index>_<name>_pipeline.png and logged to W&B as `figures/pipeline`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vizlab.errors import ConfigError
from vizlab.methods.base import AttributionMethod, Explanation, Target, minmax, resolve_target, upsample
from vizlab.methods.registry import register

STAGES = ("low", "high", "refined")


def hrcam_network(model: nn.Module) -> nn.Module:
    """The HalfModel / FullModel inside `model` (a ZooModel or the network itself)."""
    from vizlab.models.hrcam import HalfModel

    net = getattr(model, "net", model)
    if not isinstance(net, HalfModel):
        raise ConfigError(f"method=hrcam needs an HR-CAM model (model=hrcam_full, or a vizlab.models.hrcam.FullModel); "
                          f"got {type(net).__name__}. For other CNNs use method=cam or gradcam.")
    return net


@register
class HRCAM(AttributionMethod):
    """HR-CAM low / high / refined maps of the explained class (see the module docstring)."""

    name = "hrcam"
    summary = "HR-CAM's low / high / refined map (see *High-Resolution CAM* below)"
    defaults_note = "`stage=refined`; needs an HR-CAM model"
    input_dims = 4
    any_model = False

    def __init__(self, model: nn.Module, stage: str = "refined", pipeline: dict[str, Any] | None = None,
                 figures: bool = True) -> None:
        super().__init__(model)
        from vizlab.models.hrcam import FullModel

        if stage not in STAGES:
            raise ConfigError(f"method.stage must be one of {STAGES}, got {stage!r}.")
        if not isinstance(figures, bool):
            raise ConfigError(f"method.figures must be true or false, got {figures!r}.")
        self.net = hrcam_network(model)
        if stage != "low" and not isinstance(self.net, FullModel):
            raise ConfigError(f"method.stage={stage} needs the expansion path: use model=hrcam_full "
                              "(train it with task=train_full); a HalfModel only gives stage=low.")
        self.stage = stage
        self.figures = figures
        self.pipeline = dict(pipeline or {})
        self.params = None
        if stage == "refined":
            from vizlab.hrcam.pipeline import PipelineParams

            self.params = PipelineParams.from_dict(self.pipeline)

    def image01(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised input mapped back to [0, 1] (what the pipeline crops)."""
        if hasattr(self.model, "denormalize"):
            return self.model.denormalize(x)
        cfg = self.net.config
        mean = torch.tensor(cfg.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(cfg.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)

    def explain(self, x: torch.Tensor, target: Target) -> Explanation:
        with torch.no_grad():
            out = self.net.features(x)
            logits = out["logits"]
            t = resolve_target(target, logits)
            w = self.net.cam_weights(t)
            low = torch.einsum("nkhw,nk->nhw", out["a_low"], w)
            high = torch.einsum("nkhw,nk->nhw", out["a_high"], w) if "a_high" in out else None
        extras = {"low": low} if high is None else {"low": low, "high": high}
        if self.stage == "low":
            saliency, raw = minmax(upsample(low, x.shape[2:])), low
        elif self.stage == "high":
            saliency, raw = minmax(high), high
        else:
            from vizlab.hrcam.pipeline import refine

            steps = refine(self.image01(x), low, high, self.params)
            saliency = steps["merged"].to(x.dtype).clamp(0, 1)
            raw = saliency
            extras["pipeline"] = steps
        return Explanation(saliency, raw, t, logits.detach(), extras)

    def sample_figures(self, info: Explanation, index: int, image: torch.Tensor) -> dict[str, Any]:
        """{"pipeline": uint8 RGB (H, W, 3)}: sample `index`'s refinement drawn step by step (stage "refined"
        with figures=True; else {}). 1300×1050 px with matplotlib, else a 4×3 OpenCV mosaic of the image size."""
        steps = info.extras.get("pipeline")
        if not self.figures or steps is None:
            return {}
        from vizlab.viz.pipeline_figure import pipeline_figure

        t = int(info.target[index])
        name = self.model.class_name(t) if hasattr(self.model, "class_name") else str(t)
        prob = float(info.logits[index].float().softmax(0)[t])
        return {"pipeline": pipeline_figure(steps, index, title=f"HR-CAM refinement: class {t} {name} (p={prob:.2f})")}

    def __repr__(self) -> str:
        extra = f", pipeline={self.pipeline}" if self.pipeline else ""
        extra += "" if self.figures else ", figures=False"
        return f"HRCAM(stage={self.stage!r}{extra})"


__all__ = ["HRCAM", "hrcam_network"]
