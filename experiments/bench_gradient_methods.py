"""Benchmark vizlab's Grad-CAM and Integrated Gradients against their physical limits and two peers.

What "the limit" means
----------------------
Grad-CAM needs the target layer's activations A and ∂y_t/∂A, nothing else. The least work that
gives both is one forward pass with the parameters frozen, where the autograd graph *starts* at
the layer (a forward hook replaces the layer output by a detached leaf that requires grad), and
one backward pass from the target logits down to that leaf only: no weight gradients, no input
gradients, nothing recorded before the layer. That is row "limit (fwd + bwd to layer)", written
here from scratch (it does not use vizlab's hooks). Row "forward + backward (to input)" is the
usual cost of one plain gradient explanation (frozen parameters, backward down to the input); a
Grad-CAM that costs more than that is doing avoidable work.

Integrated Gradients with `steps` Riemann steps needs `steps` forward + backward passes to the
input per image, so its limit is N · steps rows of forward + backward, measured on a 32-row batch
(the batch size both IG implementations use internally) and scaled to N · steps rows. IG rows'
"× fwd+bwd" compares with steps × row 2 instead (forward + backward at batch N): on small CPUs a
smaller batch is often cheaper per row (cache), so that column shows what a smaller chunk would give.

The CAM family (section "family"): Grad-CAM++, XGrad-CAM and LayerCAM need exactly Grad-CAM's
signals, so their limit is the same forward + backward to the layer; Eigen-CAM needs one forward
(limit: a no-grad forward). Each is checked against pytorch-grad-cam's counterpart (Pearson of the
final maps) and timed against it. Score-CAM (section "scorecam") needs N·C masked forward passes
(C = channels of the layer); its limit is those forwards alone, at the same batch size, on
inputs built beforehand — reported as masked forwards per second.

Peers: Captum (LayerGradCam + LayerAttribution.interpolate to input size, IntegratedGradients) and
pytorch-grad-cam (GradCAM with ClassifierOutputTarget). pytorch-grad-cam calls `loss.backward()`,
so it only works with parameters that require grad; they are unfrozen for that peer alone.

Inputs are real photos (skimage chelsea, coffee, astronaut, rocket, repeated to the batch size),
resized to the model's input size, and the targets are the model's predicted classes. Before
timing, the script checks that vizlab and Captum compute the same Grad-CAM and IG maps.

CPU timings need an otherwise idle machine: the script prints the 1-minute load average and warns
when it is above 1, since concurrent jobs (tests, other benchmarks) skew every row, not uniformly.

Run:
    make bench                       # every benchmark script, with its defaults
    .venv/bin/python experiments/bench_gradient_methods.py --batch 8 --threads 2   # this one, with options
    .venv/bin/python experiments/bench_gradient_methods.py --sections family,scorecam --scorecam-images 1
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version

import torch
from bench_common import (
    IMAGE_NAMES,
    add_fast_args,
    apply_fast,
    check_tolerance,
    cpu_model,
    load_images,
    pick_device,
    predicted_targets,
    time_call,
    time_interleaved,
    verdict,
)
from torch import nn

import vizlab

IG_CHUNK = 32  # rows per forward + backward inside both IG implementations (and the IG limit)
GOAL_VS_FWD_BWD = 1.15
SECTIONS = ("gradcam", "ig", "family", "scorecam")
FAMILY = {"gradcampp": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "layercam": "LayerCAM", "eigencam": "EigenCAM"}


# --- command line and environment --------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="images per call")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per method (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per method before timing")
    p.add_argument("--ig-steps", type=int, default=25, help="Integrated Gradients Riemann steps")
    p.add_argument("--model", default="efficientnet_lite0", help="vizlab zoo model")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda is used only if available")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--scorecam-images", type=int, default=1, help="images per Score-CAM call (N·C masked forwards)")
    p.add_argument("--scorecam-batch", type=int, default=32, help="masked inputs per forward (both implementations)")
    add_fast_args(p)
    args = p.parse_args(argv)
    args.sections = [x for x in args.sections.split(",") if x]
    if set(args.sections) - set(SECTIONS):
        p.error(f"--sections: unknown {sorted(set(args.sections) - set(SECTIONS))}; choose from {SECTIONS}")
    for name in ("batch", "threads", "repeats", "ig_steps", "scorecam_images", "scorecam_batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def environment_line(args: argparse.Namespace, device: torch.device) -> str:
    import captum

    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    load = f" · load avg {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return (f"torch {torch.__version__} · threads {torch.get_num_threads()} · device {dev} · "
            f"CPU {cpu_model()} ({os.cpu_count()} logical){load} · batch {args.batch} · model {args.model} · "
            f"captum {captum.__version__} · grad-cam {version('grad-cam')} · vizlab {vizlab.__version__}")


# --- inputs ------------------------------------------------------------------------------------
# --- timing ------------------------------------------------------------------------------------
@contextmanager
def parameter_grads(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Temporarily set requires_grad on every parameter; restore flags and drop .grad afterwards."""
    params = list(model.parameters())
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(enabled)
    try:
        yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)
            p.grad = None


# --- the limits (written here, independent of vizlab) ------------------------------------------
def target_sum(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, t[:, None]).sum()


def layer_limit(model: nn.Module, layer: nn.Module, x: torch.Tensor, t: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Forward with the graph starting at `layer`, backward from the target logits to it only."""

    def run() -> torch.Tensor:
        box: dict[str, torch.Tensor] = {}

        def hook(_module: nn.Module, _inputs: object, out: torch.Tensor) -> torch.Tensor:
            box["leaf"] = out.detach().requires_grad_()
            return box["leaf"]

        handle = layer.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                logits = model(x)
        finally:
            handle.remove()
        (grad,) = torch.autograd.grad(target_sum(logits, t), box["leaf"])
        return grad

    return run


def input_fwd_bwd(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Plain forward + backward of the target logits to the input (frozen parameters)."""

    def run() -> torch.Tensor:
        xi = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xi)
        (grad,) = torch.autograd.grad(target_sum(logits, t), xi)
        return grad

    return run


def rows_like(x: torch.Tensor, t: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x and t repeated cyclically to `rows` rows (a stand-in for a chunk of IG path points)."""
    idx = torch.arange(rows, device=x.device) % x.shape[0]
    return x[idx].contiguous(), t[idx]


# --- vizlab and the peers ----------------------------------------------------------------------
def vizlab_gradcam(model: nn.Module, layer_name: str, x: torch.Tensor, t: torch.Tensor) -> Callable[[], torch.Tensor]:
    method = vizlab.methods.build("gradcam", model, layer=layer_name)
    return lambda: method(x, t)


def captum_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, t: torch.Tensor) -> Callable[[], torch.Tensor]:
    from captum.attr import LayerAttribution, LayerGradCam

    gc = LayerGradCam(model, layer)

    def run() -> torch.Tensor:
        attr = gc.attribute(x, target=t, relu_attributions=True)
        return LayerAttribution.interpolate(attr, tuple(x.shape[2:]), interpolate_mode="bilinear")

    return run


def time_pytorch_grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, t: torch.Tensor,
                          repeats: int, warmup: int, device: torch.device) -> float:
    """pytorch-grad-cam needs parameters that require grad; unfreeze them for this peer only."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(int(c)) for c in t]
    with parameter_grads(model, True), GradCAM(model=model, target_layers=[layer]) as cam:
        return time_call(lambda: cam(input_tensor=x, targets=targets), repeats, warmup, device)


def pgc_class(name: str) -> type:
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, {**FAMILY, "gradcam": "GradCAM", "scorecam": "ScoreCAM"}[name])


def pgc_call(name: str, model: nn.Module, layer: nn.Module, x: torch.Tensor, t: torch.Tensor,
             batch_size: int = 32) -> Callable[[], object]:
    """A pytorch-grad-cam call (to be run inside parameter_grads(model, True): it calls backward())."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = pgc_class(name)(model=model, target_layers=[layer])
    cam.batch_size = batch_size
    targets = [ClassifierOutputTarget(int(c)) for c in t]
    return lambda: cam(input_tensor=x, targets=targets)


def forward_only(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    return run


def masked_forward_limit(model: nn.Module, x: torch.Tensor, rows: int, batch: int) -> Callable[[], None]:
    """The forwards Score-CAM cannot avoid: `rows` inputs in batches of `batch`, built beforehand."""
    full, rest = divmod(rows, batch)
    big = rows_like(x, x.new_zeros(x.shape[0], dtype=torch.long), batch)[0]

    def run() -> None:
        with torch.no_grad():
            for _ in range(full):
                model(big)
            if rest:
                model(big[:rest])

    return run


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """The smallest per-sample Pearson correlation of two (N, ...) batches of maps."""
    a, b = a.flatten(1).double(), torch.as_tensor(b).flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)).min())


def vizlab_ig(model: nn.Module, x: torch.Tensor, t: torch.Tensor, steps: int) -> Callable[[], object]:
    method = vizlab.methods.build("integrated_gradients", model, steps=steps, rule="left", baseline="black",
                                  batch_size=IG_CHUNK)
    return lambda: method(x, t, return_info=True)


def captum_ig(model: nn.Module, x: torch.Tensor, t: torch.Tensor, steps: int) -> Callable[[], torch.Tensor]:
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(model)
    baseline = model.normalize(torch.zeros_like(x))
    return lambda: ig.attribute(x, baselines=baseline, target=t, n_steps=steps, method="riemann_left",
                                internal_batch_size=IG_CHUNK)


# --- correctness -------------------------------------------------------------------------------
def per_sample_minmax(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(maps)


def check_gradcam(model: nn.Module, layer_name: str, layer: nn.Module, x: torch.Tensor, t: torch.Tensor,
                  tol: float = 1e-4) -> float:
    """vizlab's layer-resolution map, ReLU'd and min-maxed, equals Captum's LayerGradCam."""
    from captum.attr import LayerGradCam

    info = vizlab.methods.build("gradcam", model, layer=layer_name)(x, t, return_info=True)
    ours = per_sample_minmax(info.raw.clamp_min(0))
    theirs = per_sample_minmax(LayerGradCam(model, layer).attribute(x, target=t, relu_attributions=True)[:, 0])
    assert torch.equal(info.target, t), "vizlab explained other classes than requested"
    assert ours.shape == theirs.shape, f"shape {tuple(ours.shape)} vs Captum {tuple(theirs.shape)}"
    err = (ours - theirs.detach()).abs().max().item()
    assert err < tol, f"vizlab Grad-CAM differs from Captum LayerGradCam: max |diff| {err:.2e} >= {tol:.0e}"
    return err


def check_ig(model: nn.Module, x: torch.Tensor, t: torch.Tensor, steps: int, tol: float = 5e-3) -> float:
    """vizlab's signed IG attribution equals Captum's (same rule, baseline, steps): relative L2 error.

    Not bit-identical: the path points are rounded differently (one broadcast vs one op per step), and
    pixel gradients of a ReLU6 network amplify last-bit differences (observed: ~5e-4 L2, ~2e-3 max).
    """
    ours = vizlab_ig(model, x, t, steps)().raw
    theirs = captum_ig(model, x, t, steps)().detach()
    err = ((ours - theirs).norm() / theirs.norm()).item()
    assert err < tol, f"vizlab IG differs from Captum IG: ||diff|| / ||IG|| = {err:.2e} >= {tol:.0e}"
    return err


# --- report ------------------------------------------------------------------------------------
@dataclass
class Row:
    method: str
    seconds: float
    limit: float      # reference for "× limit"
    fwd_bwd: float    # reference for "× fwd+bwd"
    peers: str = "—"


def speedups(ours: float, peers: dict[str, float]) -> str:
    return ", ".join(f"{peer_s / ours:.2f}× {name}" for name, peer_s in peers.items())


def markdown_table(rows: list[Row], n: int) -> str:
    lines = ["| method | ms / batch | images/s | × limit | × fwd+bwd | vs peer |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.method} | {r.seconds * 1e3:.1f} | {n / r.seconds:.1f} | {r.seconds / r.limit:.2f} | "
                     f"{r.seconds / r.fwd_bwd:.2f} | {r.peers} |")
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    model = vizlab.load_model(args.model, device=device)
    fast = apply_fast(model, args)
    layer_name = model.info.default_layer
    layer = dict(model.net.named_modules())[layer_name]
    size = model.info.input_size
    n, steps, reps, warm = args.batch, args.ig_steps, args.repeats, args.warmup

    x = model.normalize(load_images(n, size, device))
    t = predicted_targets(model, x)

    print(f"{environment_line(args, device)} · {fast}")
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > 1.0:
        print("warning: the machine is busy (1-min load average > 1); other processes distort CPU timings")
    print(f"targets: {', '.join(model.class_name(int(c)) for c in t[:len(IMAGE_NAMES)])}"
          f"{' (repeated)' if n > len(IMAGE_NAMES) else ''} · Grad-CAM layer {layer_name} · "
          f"IG {steps} steps (left Riemann, black baseline, {IG_CHUNK}-row chunks) · "
          f"median of {reps} after {warm} warm-up")
    with parameter_grads(model, False):  # frozen for all (pytorch-grad-cam unfreezes for itself)
        if "gradcam" in args.sections or "ig" in args.sections:
            # reduced precision: vizlab keeps layer maps in float32, Captum computes them in the autocast dtype
            gc_err = check_gradcam(model, layer_name, layer, x, t, check_tolerance(args, 1e-4, 5e-2))
            ig_err = check_ig(model, x, t, steps, check_tolerance(args, 5e-3, 1e-1))
            print(f"check: vizlab Grad-CAM == Captum LayerGradCam (max |diff| {gc_err:.1e}); "
                  f"vizlab IG == Captum IG (relative L2 diff {ig_err:.1e})")
            timings = run_timings(model, layer_name, layer, x, t, args)
            print()
            print(report(timings, n, steps))
        if "family" in args.sections:
            print()
            print(family_report(model, layer_name, layer, x, t, args))
        if "scorecam" in args.sections:
            print()
            print(scorecam_report(model, layer_name, layer, x[:args.scorecam_images], t[:args.scorecam_images], args))


def family_report(model: nn.Module, layer_name: str, layer: nn.Module, x: torch.Tensor, t: torch.Tensor,
                  args: argparse.Namespace) -> str:
    """Grad-CAM++, XGrad-CAM, LayerCAM, Eigen-CAM: vizlab vs pytorch-grad-cam vs the limit (interleaved)."""
    device, n = x.device, x.shape[0]
    fns: dict[str, Callable[[], object]] = {"limit": layer_limit(model, layer, x, t), "forward": forward_only(model, x),
                                            "gradcam": vizlab_gradcam(model, layer_name, x, t)}
    peers: dict[str, Callable[[], object]] = {}
    r: dict[str, float] = {}
    for name in FAMILY:
        method = vizlab.methods.build(name, model, layer=layer_name)
        fns[name] = lambda m=method: m(x, t)
        with parameter_grads(model, True):
            peers[name] = pgc_call(name, model, layer, x, t)
            r[name] = pearson(method(x, t).cpu(), peers[name]())
    s = time_interleaved(fns, args.repeats, args.warmup, device)
    with parameter_grads(model, True):
        p = time_interleaved(peers, args.repeats, args.warmup, device)
    lines = ["| method | vizlab ms / batch (wall) | × limit (CPU time) | × limit (wall) | pytorch-grad-cam ms (wall) | "
             "vizlab speed-up (CPU time) | Pearson vs peer |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in ("limit", "forward", "gradcam", *FAMILY):
        base = "forward" if name in ("forward", "eigencam") else "limit"
        peer = (f"{p[name][0] * 1e3:.1f}", f"{p[name][1] / s[name][1]:.2f}×", f"{r[name]:.4f}") if name in p else ("—",) * 3
        label = {"limit": "limit: forward + backward to the layer", "forward": "limit: forward only (Eigen-CAM's)",
                 "gradcam": "vizlab gradcam (for reference)"}.get(name, f"**vizlab {name}**")
        lines.append(f"| {label} | {s[name][0] * 1e3:.1f} | {s[name][1] / s[base][1]:.2f} | {s[name][0] / s[base][0]:.2f} | "
                     f"{peer[0]} | {peer[1]} | {peer[2]} |")
    lines.append(f"\n{n} images per call; median of {args.repeats} interleaved rounds after {args.warmup} warm-up; "
                 "× limit = / the forward + backward row (Eigen-CAM: / the forward row); speed-up = pytorch-grad-cam "
                 "CPU time / vizlab CPU time; Pearson: the smallest per-sample correlation of the final maps.")
    return "\n".join(lines)


def scorecam_report(model: nn.Module, layer_name: str, layer: nn.Module, x: torch.Tensor, t: torch.Tensor,
                    args: argparse.Namespace) -> str:
    """Score-CAM as masked forwards per second: vizlab vs pytorch-grad-cam vs the pure-forward limit."""
    device, b = x.device, args.scorecam_batch
    method = vizlab.methods.build("scorecam", model, layer=layer_name, batch_size=b)
    channels = method.signals(x, t).acts.shape[1]
    rows = x.shape[0] * channels
    with parameter_grads(model, True):
        peer = pgc_call("scorecam", model, layer, x, t, batch_size=b)
        r = pearson(method(x, t).cpu(), peer())
        fns = {"limit": masked_forward_limit(model, x, rows, b), "vizlab": lambda: method(x, t), "pgc": peer}
        s = time_interleaved(fns, max(1, args.repeats // 2), 0, device)
    lines = ["| Score-CAM | seconds (wall) | masked forwards / s (wall) | × limit (CPU time) | × limit (wall) |",
             "|---|---:|---:|---:|---:|"]
    for key, label in (("limit", f"limit: {rows} forwards in batches of {b}, inputs built beforehand"),
                       ("vizlab", "**vizlab scorecam**"), ("pgc", "pytorch-grad-cam ScoreCAM")):
        lines.append(f"| {label} | {s[key][0]:.2f} | {rows / s[key][0]:.1f} | {s[key][1] / s['limit'][1]:.2f} | "
                     f"{s[key][0] / s['limit'][0]:.2f} |")
    lines.append(f"\n{x.shape[0]} image(s) × {channels} channels of {layer_name}; median of "
                 f"{max(1, args.repeats // 2)} interleaved rounds (the correctness check was the warm-up); vizlab is "
                 f"{s['pgc'][1] / s['vizlab'][1]:.2f}× faster than pytorch-grad-cam in CPU time "
                 f"({s['pgc'][0] / s['vizlab'][0]:.2f}× wall). Pearson of the final maps: {r:.4f}.")
    return "\n".join(lines)


def run_timings(model: nn.Module, layer_name: str, layer: nn.Module, x: torch.Tensor, t: torch.Tensor,
                args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per call of every benchmarked function, keyed by short names."""
    device, n, steps, reps, warm = x.device, x.shape[0], args.ig_steps, args.repeats, args.warmup
    s: dict[str, float] = {}
    s["limit"] = time_call(layer_limit(model, layer, x, t), reps, warm, device)
    s["fwd_bwd"] = time_call(input_fwd_bwd(model, x, t), reps, warm, device)
    s["vizlab"] = time_call(vizlab_gradcam(model, layer_name, x, t), reps, warm, device)
    s["captum"] = time_call(captum_gradcam(model, layer, x, t), reps, warm, device)
    try:
        s["pgc"] = time_pytorch_grad_cam(model, layer, x, t, reps, warm, device)
    except (TypeError, RuntimeError) as exc:  # e.g. numpy has no bfloat16: the peer cannot run in bf16
        print(f"note: pytorch-grad-cam failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); row left out")
        s["pgc"] = float("nan")
    x32, t32 = rows_like(x, t, IG_CHUNK)
    s["ig_limit"] = time_call(input_fwd_bwd(model, x32, t32), reps, warm, device) * n * steps / IG_CHUNK
    s["vizlab_ig"] = time_call(vizlab_ig(model, x, t, steps), reps, warm, device)
    s["captum_ig"] = time_call(captum_ig(model, x, t, steps), reps, warm, device)
    return s


def report(s: dict[str, float], n: int, steps: int) -> str:
    """The Markdown table, its legend and the goal line."""
    gc_peers = {"Captum": s["captum"], "pytorch-grad-cam": s["pgc"]}
    gc_peers = {k: v for k, v in gc_peers.items() if v == v}  # a peer that could not run (NaN) is left out
    ig_fb = s["fwd_bwd"] * steps  # IG "× fwd+bwd": steps × row 2 (forward + backward at batch N)
    rows = [
        Row("limit (fwd + bwd to layer)", s["limit"], s["limit"], s["fwd_bwd"]),
        Row("forward + backward (to input)", s["fwd_bwd"], s["limit"], s["fwd_bwd"]),
        Row("**vizlab Grad-CAM**", s["vizlab"], s["limit"], s["fwd_bwd"], speedups(s["vizlab"], gc_peers)),
        Row("Captum LayerGradCam + interpolate", s["captum"], s["limit"], s["fwd_bwd"]),
        *([Row("pytorch-grad-cam GradCAM", s["pgc"], s["limit"], s["fwd_bwd"])] if "pytorch-grad-cam" in gc_peers else []),
        Row(f"IG limit ({steps} × fwd+bwd, {IG_CHUNK}-row batches)", s["ig_limit"], s["ig_limit"], ig_fb),
        Row(f"**vizlab IG** ({steps} steps)", s["vizlab_ig"], s["ig_limit"], ig_fb,
            speedups(s["vizlab_ig"], {"Captum": s["captum_ig"]})),
        Row(f"Captum IntegratedGradients ({steps} steps)", s["captum_ig"], s["ig_limit"], ig_fb),
    ]
    within = s["vizlab"] <= GOAL_VS_FWD_BWD * s["fwd_bwd"]
    faster = all(s["vizlab"] < peer for peer in gc_peers.values())
    return "\n".join([
        markdown_table(rows, n),
        "",
        f"Grad-CAM rows: × limit = / row 1, × fwd+bwd = / row 2. IG rows: × limit = / IG limit, "
        f"× fwd+bwd = / ({steps} × row 2). vs peer = peer time / vizlab time (> 1: vizlab faster).",
        f"goal: Grad-CAM within {GOAL_VS_FWD_BWD}× of forward+backward: {verdict(within)} "
        f"({s['vizlab'] / s['fwd_bwd']:.2f}×); faster than both peers: {verdict(faster)} "
        f"({speedups(s['vizlab'], gc_peers)})",
    ])

if __name__ == "__main__":
    main()
