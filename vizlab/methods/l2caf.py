"""L2-CAF: constrained attention filters (Taha et al., ECCV 2020), at any layer, for images and clips.

The network splits at `layer` into a trunk Φ and a head Ψ; A = Φ(x) (C × S', S' = H'×W' or
T'×H'×W') and NT = Ψ(A) are the original logits. A filter f over S' (broadcast over channels) is
optimised through its constrained form f̂ (vizlab.methods.caf_filter) so that FT = Ψ(A ⊙ f̂)

    class_oblivious:  minimises mean_c (FT_c − NT_c)²               (keeps every logit)
    class_specific:   minimises Σ_c FT_c − 2·FT_t = Σ_{c≠t} FT_c − FT_t  (raises the target t)

with SGD (pt_compat) or Adam (tf_compat), learning rate decaying linearly from lr to end_lr over
max_iter iterations (torch LambdaLR, as the PyTorch port). Stop rule (the port's): at every
iteration t with t % stop_period == 0 (t = 0, 50, 100, ...), after the step, a filter stops when
|loss_t − loss_{t−period}| < stop_tol (loss_t: the loss before step t; at t = 0 it is compared with
+∞). The filter kept is the one after the last step. The map is |f̂|/‖f̂‖ (l2norm) or f̂ (softmax,
gauss), upsampled to the input and min-max normalised.

Rows: every (sample, target) row has its own filter and its own stop; rows that stopped keep their
filter and leave the batch (when the network allows it). Several targets per sample are several rows
(vizlab.methods.targets.repeat_for_targets).

Speed: mode="fast" computes the trunk once and iterates only the rest of the network (a torch.fx
split, or a replay of the trunk from a cache for networks fx cannot trace: vizlab.methods.layer_runner);
mode="slow" runs the full network per iteration with a forward hook that substitutes A ⊙ f̂.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from vizlab.errors import ConfigError
from vizlab.layers import LayerSpec
from vizlab.methods.base import Explanation, Target, logits_of, minmax, resolve_target, upsample
from vizlab.methods.caf_filter import CONSTRAINTS, INITS, ConstrainedFilters
from vizlab.methods.cam import _LayerMethod
from vizlab.methods.hooks import capture_layer
from vizlab.methods.layer_runner import HeadRunner, head_runner, verified_traced_head
from vizlab.methods.registry import register
from vizlab.methods.split import Split, SplitError
from vizlab.progress import progress_bar
from vizlab.validation import check_choice, check_number

OBJECTIVES = ("class_oblivious", "class_specific")
MODES = ("fast", "slow")
OPTIMIZERS = ("sgd", "adam")
TEMPORAL = ("joint", "per_frame")

# Each preset sets every option it implies; an option given explicitly (not None) wins over the preset.
PRESETS: dict[str, dict[str, Any]] = {
    # ahmdtaha/l2_caf_pytorch (class_specific.py / class_oblivious.py)
    "pt_compat": {"optimizer": "sgd", "lr": 0.5, "end_lr": 1e-5, "max_iter": 1000, "init": "ones",
                  "stop_period": 50, "stop_tol": 1e-6},
    # ahmdtaha/constrained_attention_filter, visualize_attention.py (its fast script stops at 1e-4)
    "tf_compat": {"optimizer": "adam", "lr": 0.5, "end_lr": 0.0, "max_iter": 1000, "init": "normal",
                  "stop_period": 50, "stop_tol": 1e-6},
}


@register
class L2CAF(_LayerMethod):
    """L2-CAF at `layer` (default: the zoo model's layer, else the last spatial feature map).

    objective: class_specific (default: raise the target) | class_oblivious (keep every logit).
    constraint: l2norm | softmax | gauss.
    temporal (clips): joint (one T'×H'×W' filter) | per_frame (one H'×W' filter per frame).
    mode: fast (trunk once, head per iteration) | slow (full forward per iteration).
    preset: pt_compat (SGD, lr 0.5 → 1e-5, 1000 iterations, ones, stop every 50 at 1e-6) |
    tf_compat (Adam, lr 0.5 → 0, 1000 iterations, 𝒩(0, 1) init, stop every 50 at 1e-6).
    optimizer, lr, end_lr, max_iter, init, stop_period, stop_tol: None = the preset's value.
    learn_covariance / sigma: gauss only — learn Σ too / initial (or fixed) std in map cells.
    seed: the 𝒩(0, 1) init's seed. progress: tqdm bar.

    Returns saliency (N, *S) in [0, 1]; raw = the signed constrained filter f̂ (N, *S'); extras:
    "iterations" (N,) optimiser steps run, "loss" (N, iterations) the loss before each step (NaN
    after a stop), "final_loss" (N,), "filtered_logits" (N, K) = Ψ(A ⊙ f̂) of the returned filter,
    and for gauss "centre" (N, G, D) and "covariance" (N, G, D, D).
    """

    name = "l2caf"
    summary = ("a constrained attention filter f̂ on a layer's map, optimised so the rest of the network raises the "
               "target (`class_specific`) or keeps its logits (`class_oblivious`); map = |f̂| upsampled")
    defaults_note = ("the PyTorch port's: SGD lr 0.5 → 1e-5, 1000 iterations, ones init, stop every 50 at 1e-6 "
                     "(`preset=tf_compat`: Adam, 𝒩(0, 1)); **any layer** of any network (the port: last conv of 3 nets), "
                     "fast mode for any network, Gaussian on any map size, clips, N samples × K targets in one batch")

    def __init__(self, model: nn.Module, layer: LayerSpec | None = None, objective: str = "class_specific",
                 constraint: str = "l2norm", temporal: str = "joint", mode: str = "fast",
                 preset: str = "pt_compat", optimizer: str | None = None, lr: float | None = None,
                 end_lr: float | None = None, max_iter: int | None = None, init: str | None = None,
                 stop_period: int | None = None, stop_tol: float | None = None, learn_covariance: bool = False,
                 sigma: float = 1.0, seed: int = 0, progress: bool = True) -> None:
        super().__init__(model, layer)
        check_choice("objective", objective, OBJECTIVES)
        check_choice("constraint", constraint, CONSTRAINTS)
        check_choice("temporal", temporal, TEMPORAL)
        check_choice("mode", mode, MODES)
        check_choice("preset", preset, tuple(PRESETS))
        given = {"optimizer": optimizer, "lr": lr, "end_lr": end_lr, "max_iter": max_iter, "init": init,
                 "stop_period": stop_period, "stop_tol": stop_tol}
        resolved = {k: (v if v is not None else PRESETS[preset][k]) for k, v in given.items()}
        check_choice("optimizer", resolved["optimizer"], OPTIMIZERS)
        check_choice("init", resolved["init"], INITS)
        check_number("lr", resolved["lr"], 0, low_open=True)
        check_number("end_lr", resolved["end_lr"], 0)
        check_number("max_iter", resolved["max_iter"], 1, integer=True)
        check_number("stop_period", resolved["stop_period"], 1, integer=True)
        check_number("stop_tol", resolved["stop_tol"], 0)
        check_number("sigma", sigma, 0, low_open=True)
        check_number("seed", seed, integer=True)
        if resolved["end_lr"] > resolved["lr"]:
            raise ConfigError(f"end_lr ({resolved['end_lr']}) must not exceed lr ({resolved['lr']}): the learning "
                              "rate decays linearly from lr to end_lr.")
        if learn_covariance and constraint != "gauss":
            raise ConfigError("learn_covariance=true needs constraint=gauss (only the Gaussian filter has a covariance).")
        self.objective, self.constraint, self.temporal, self.mode, self.preset = (
            objective, constraint, temporal, mode, preset)
        self.optimizer_name, self.lr, self.end_lr = resolved["optimizer"], float(resolved["lr"]), float(resolved["end_lr"])
        self.max_iter, self.init = int(resolved["max_iter"]), resolved["init"]
        self.stop_period, self.stop_tol = int(resolved["stop_period"]), float(resolved["stop_tol"])
        self.learn_covariance, self.sigma, self.seed = bool(learn_covariance), float(sigma), int(seed)
        self.progress = bool(progress)
        self.engine: str | None = None       # the engine of the last call: fx | replay | full
        self._splits: dict[str, Split | SplitError] = {}

    # --- the method ---------------------------------------------------------------------------
    def explain(self, x: torch.Tensor, target: Target) -> Explanation:
        layer = self.target_layer(x)
        runner = verified_traced_head(self.model, layer, x, self._splits) if self.mode == "fast" else None
        if runner is not None:  # the trunk, run once, gives the clean logits too
            logits, notes = runner.clean_logits, []
            t = resolve_target(target, logits)
            shape = self._check_layer(runner.activation, 1, x)
        else:
            with torch.no_grad(), capture_layer(layer) as cap:
                logits = logits_of(self.model(x))
            t = resolve_target(target, logits)
            shape = self._check_layer(cap.get(self.layer_name), cap.calls, x)
            runner, notes = head_runner(self.model, layer, x, logits, shape, self.mode, self._splits)
        if self.mode == "fast" and runner.engine == "full":
            warnings.warn(f"l2caf: cannot run the network after layer {self.layer_name!r} on its own "
                          f"({'; '.join(notes)}); falling back to slow mode (a full forward pass per iteration).",
                          RuntimeWarning, stacklevel=3)
        self.engine = runner.engine
        filters = ConstrainedFilters(self.constraint, shape[2:], x.shape[0], self.temporal == "per_frame",
                                     self.init, self.seed, self.learn_covariance, self.sigma, x.device, x.dtype)
        iterations, history = self._optimise(runner, filters, logits.detach(), t)
        with torch.no_grad():
            fhat = filters.constrained()
            filtered = runner.logits(lambda a: a * fhat.unsqueeze(1), None)
            final = self._loss(filtered, logits, t)
        saliency = minmax(upsample(filters.display(fhat), x.shape[2:]))
        extras: dict[str, Any] = {"iterations": iterations, "loss": history, "final_loss": final,
                                  "filtered_logits": filtered}
        if self.constraint == "gauss":
            extras["centre"], extras["covariance"] = filters.centre(), filters.covariance()
        return Explanation(saliency, fhat, t, logits.detach(), extras)

    def _check_layer(self, activation: torch.Tensor, calls: int, x: torch.Tensor) -> torch.Size:
        name = self.layer_name
        if calls > 1:
            raise ConfigError(f"Layer {name!r} runs {calls} times per forward pass, so one filter cannot be placed "
                              "on it; choose a layer that runs once (e.g. its parent block).")
        shape = activation.shape
        if activation.dim() not in (4, 5) or shape[0] != x.shape[0]:
            n = x.shape[0]
            folded = (f" The network folds frames into the batch here ({shape[0]} = {n} × {shape[0] // n}); choose a "
                      "layer after they are regrouped into clips (the zoo default layer)."
                      if activation.dim() >= 1 and shape[0] != n and shape[0] % n == 0 else "")
            raise ConfigError(f"Layer {name!r} outputs shape {tuple(shape)}; L2-CAF filters a feature map "
                              f"(N, C, H', W') or (N, C, T', H', W') with one row per sample (N = {n}).{folded} "
                              "Choose a convolutional layer (vizlab layers MODEL lists them).")
        spatial = tuple(shape[2:])
        per_frame = self.temporal == "per_frame" and len(spatial) == 3
        axes = spatial[1:] if per_frame else spatial
        size = "×".join(str(s) for s in spatial)
        if min(axes) < 1 or torch.Size(axes).numel() < 2:
            raise ConfigError(f"Layer {name!r} has a {size} map: a {self.constraint} filter over a single position "
                              "cannot localise anything; choose an earlier layer with a larger map.")
        if self.constraint == "gauss" and min(axes) < 2:
            hint = " or temporal=per_frame" if len(spatial) == 3 and not per_frame and min(spatial[1:]) >= 2 else ""
            raise ConfigError(f"A Gaussian filter needs at least 2 positions along every axis it spans; layer "
                              f"{name!r} has a {size} map. Use constraint=l2norm{hint}, or an earlier layer.")
        return shape

    # --- the optimisation ---------------------------------------------------------------------
    def _loss(self, filtered: torch.Tensor, original: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(r,) loss per row."""
        if self.objective == "class_oblivious":
            return (filtered - original).square().mean(dim=1)
        return filtered.sum(dim=1) - 2 * filtered.gather(1, target[:, None])[:, 0]

    def _optimiser(self, params: list[torch.Tensor]) -> tuple[torch.optim.Optimizer, Any]:
        opt = (torch.optim.SGD(params, lr=self.lr) if self.optimizer_name == "sgd"
               else torch.optim.Adam(params, lr=self.lr))
        lr0, end, total = self.lr, self.end_lr, self.max_iter
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: ((lr0 - end) * (1 - step / total) + end) / lr0)
        return opt, schedule

    def _optimise(self, runner: HeadRunner, filters: ConstrainedFilters, original: torch.Tensor,
                  target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Optimise every row's filter; returns iterations (R,) and the loss history (R, iterations)."""
        rows = target.shape[0]
        device = original.device
        opt, schedule = self._optimiser(filters.params)
        history = torch.full((rows, self.max_iter), float("nan"), device=device)
        iterations = torch.full((rows,), self.max_iter, dtype=torch.long, device=device)
        previous = torch.full((rows,), float("inf"), device=device, dtype=torch.float64)
        active = torch.arange(rows, device=device)
        weight = torch.ones(rows, device=device)
        last = 0
        bar = progress_bar(range(self.max_iter), desc=f"l2caf {rows} filter{'s' * (rows > 1)}", disable=not self.progress,
                   leave=False, dynamic_ncols=True)
        for step in bar:
            last = step
            compact = active.numel() < rows and runner.can_select_rows
            sub = active if compact else None
            with torch.enable_grad():
                fhat = filters.constrained(sub).unsqueeze(1)
                filtered = runner.logits(lambda a, fhat=fhat: a * fhat, sub)
                everyone = active.numel() == rows
                which = active if compact else slice(None)
                loss = self._loss(filtered, original[which], target[which])
                total = (loss if compact or everyone else loss * weight).sum()
                if not total.requires_grad:
                    raise ConfigError(f"Layer {self.layer_name!r} does not feed the logits (they do not change with "
                                      "the filter); choose a layer on the path from the input to the output.")
                opt.zero_grad(set_to_none=True)
                total.backward()
            opt.step()
            schedule.step()
            filters.restore_frozen()
            row_loss = loss.detach() if compact or everyone else loss.detach()[active]
            if everyone:
                history[:, step] = row_loss
            else:
                history[active, step] = row_loss.float()
            if step % self.stop_period == 0:
                value = row_loss.double()
                done = (value - previous[active]).abs() < self.stop_tol
                previous[active] = value
                if self.progress:
                    bar.set_postfix(loss=f"{float(value.mean()):.4g}", active=int(active.numel()))
                if done.any():
                    stopped = active[done]
                    iterations[stopped] = step + 1
                    filters.freeze(stopped)
                    weight[stopped] = 0
                    active = active[~done]
                    if active.numel() == 0:
                        break
        bar.close()
        return iterations, history[:, : last + 1]

    # --- what the explain loop records ---------------------------------------------------------
    def sample_details(self, info: Explanation, index: int) -> dict[str, Any]:
        """Iterations run, the final loss, and the target logit before and with the filter."""
        t = int(info.target[index])
        out = {"iterations": int(info.extras["iterations"][index]),
               "final_loss": float(info.extras["final_loss"][index]),
               "target_logit": float(info.logits[index, t]),
               "filtered_target_logit": float(info.extras["filtered_logits"][index, t])}
        if "centre" in info.extras:
            out["centre"] = info.extras["centre"][index].flatten().tolist()
        return out

    def curves(self, info: Explanation) -> dict[str, torch.Tensor]:
        """"loss": the loss before each step, (N, iterations), NaN after a row stopped."""
        return {"loss": info.extras["loss"]}

    def sample_figures(self, info: Explanation, index: int, image: torch.Tensor) -> dict[str, Any]:
        """"filter": the signed constrained filter at layer resolution; "loss": its optimisation."""
        from vizlab.viz.curves import draw_history
        from vizlab.viz.filter_figure import draw_filter

        t = int(info.target[index])
        steps = int(info.extras["iterations"][index])
        title = f"l2caf {self.constraint} filter at {self.layer_name} (target {t})"
        loss = info.extras["loss"][index, :steps]
        return {"filter": draw_filter(info.raw[index], title=title),
                "loss": draw_history(loss.view(1, 1, -1), [f"target {t}"], title=f"l2caf {self.objective}",
                                     terms=("loss",), size=(480, 280))}

    def __repr__(self) -> str:
        return (f"L2CAF(layer={self.layer_name!r}, objective={self.objective!r}, constraint={self.constraint!r}, "
                f"temporal={self.temporal!r}, mode={self.mode!r}, preset={self.preset!r}, "
                f"optimizer={self.optimizer_name!r}, lr={self.lr}, end_lr={self.end_lr}, max_iter={self.max_iter}, "
                f"init={self.init!r}, stop_period={self.stop_period}, stop_tol={self.stop_tol}, "
                f"engine={self.engine!r})")
