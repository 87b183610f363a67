"""Benchmark vizlab's deletion + insertion metric against its physical limit, a naive loop and Quantus.

What "the limit" means
----------------------
Deletion and insertion (Petsiuk et al. 2018) score the model on K perturbed copies of every image
per mode (K = ceil(H·W / pixels_per_step) + 1 curve points; 225 on 224² with 224 pixels per step,
the RISE protocol). Whatever the implementation, it must run N · K · 2 rows of forward pass; the
rest (ranking pixels, building the perturbed inputs, softmax, AUC) is overhead. Row "limit" is
exactly those forward passes and nothing else: the same rows, cut into the same batches as vizlab
cuts them (per mode, --metric-batch rows per forward, the last one shorter), each a forward of a
pre-made input tensor under torch.no_grad, with no ranking, masking or copying. "× limit" is an
implementation's time divided by the limit for the rows *it* runs; the goal is vizlab within 1.1×.

Compared:
  * vizlab `DeletionInsertion` (deletion and insertion, RISE substrates: zeros of the normalised
    tensor for deletion, blur(11, 5) for insertion) over the whole batch;
  * a naive loop as in the RISE reference code: per image and step, perturb `pixels_per_step` more
    pixels in place and run a forward of one image. It is slow, so by default it runs on the first
    image only and its time is scaled to the batch. Its AUCs must match vizlab's on that image;
  * Quantus `PixelFlipping` (deletion only: Quantus has no insertion metric), perturb_baseline
    "black", features_in_step = --pixels-per-step. Quantus broadcasts the (N, 1, H, W) map over the
    3 channels and flips that many *features* (channel values) per step, i.e. 3× more steps than
    vizlab at the same number, each one forward of all its images. It runs on the first
    --quantus-images images, scaled to the batch; its "× limit" is against its own limit: pure
    forwards of the rows it ran in the shapes it ran them (Quantus's overhead, as in the issue).

A note line gives the pure forward cost per row at 1 .. --metric-batch rows per forward: on small
CPUs large batches cost more per row (allocation page faults, caches), so the limit itself depends
on --metric-batch.

Inputs are real photos (skimage chelsea, coffee, astronaut, rocket, repeated to the batch size),
resized to 224² (bilinear, antialias), normalised; targets are the model's predicted classes and the
saliency maps are vizlab Grad-CAM. CPU timings are sensitive to other processes: the load average
is printed before and after, and vizlab and the limit are timed back to back (fastest of
--repeats). Because two runs minutes apart can see different loads, forward hooks also time the
model's forwards *inside* each implementation's run: run time / its own forward time is its
overhead, a load-robust companion to "× limit" (printed for vizlab, the naive loop and Quantus).

Run:
    make bench                              # or, with options:
    make bench ARGS="--batch 8 --threads 2"
    .venv/bin/python experiments/bench_metrics.py --batch 8 --threads 2
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from bench_common import (
    IMAGE_NAMES,
    add_fast_args,
    apply_fast,
    check_tolerance,
    cpu_model,
    load_average,
    load_images,
    pick_device,
    predicted_targets,
    synchronize,
    verdict,
)
from torch import nn

import vizlab
from vizlab.metrics.deletion_insertion import DeletionInsertion

MODES = ("deletion", "insertion")
DELETION_SUBSTRATE = "normalized_zeros"  # RISE: torch.zeros_like on the normalised tensor
INSERTION_SUBSTRATE = "blur"             # RISE: gkern(11, 5), zero padding
BLUR_KLEN, BLUR_SIGMA = 11, 5.0
GOAL_VS_LIMIT = 1.1
AGREEMENT_TOL = 1e-4


# --- command line and environment --------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="number of images")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--pixels-per-step", type=int, default=224, help="pixels perturbed per step (RISE: 224)")
    p.add_argument("--metric-batch", type=int, default=64, help="rows per forward in vizlab and the limit")
    p.add_argument("--repeats", type=int, default=1, help="timed runs of vizlab and the limit (min reported)")
    p.add_argument("--naive-images", type=int, default=1, help="images the naive loop runs on (scaled to --batch)")
    p.add_argument("--quantus-images", type=int, default=2, help="images Quantus runs on (scaled to --batch)")
    p.add_argument("--skip-quantus", action="store_true", help="do not run Quantus PixelFlipping")
    p.add_argument("--skip-naive", action="store_true", help="do not run the naive loop (nor the agreement check)")
    p.add_argument("--skip-sweep", action="store_true",
                   help="do not measure the forward cost per row at batch sizes 1 .. --metric-batch")
    p.add_argument("--model", default="efficientnet_lite0", help="vizlab zoo model")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda is used only if available")
    add_fast_args(p)
    # `make bench ARGS=...` passes the same options to every benchmark: ignore the other scripts' ones.
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print(f"note: ignoring options meant for other benchmarks: {' '.join(unknown)}")
    for name in ("batch", "threads", "pixels_per_step", "metric_batch", "repeats", "naive_images",
                 "quantus_images"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    args.naive_images = min(args.naive_images, args.batch)
    args.quantus_images = min(args.quantus_images, args.batch)
    return args


def environment_line(args: argparse.Namespace, device: torch.device) -> str:
    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    try:
        import quantus

        quantus_version = quantus.__version__
    except ImportError:
        quantus_version = "not installed"
    return (f"torch {torch.__version__} · threads {torch.get_num_threads()} · device {dev} · "
            f"CPU {cpu_model()} ({os.cpu_count()} logical) · load avg (1/5/15 min) {load_average()} · "
            f"model {args.model} · batch {args.batch} · {args.pixels_per_step} px/step · "
            f"{args.metric_batch} rows/forward · quantus {quantus_version} · vizlab {vizlab.__version__}")


# --- inputs ------------------------------------------------------------------------------------
# --- timing and counting -----------------------------------------------------------------------
@dataclass
class Timing:
    wall: float  # seconds
    cpu: float   # process CPU seconds (all threads)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[Timing, object]:
    """Wall and process CPU time of one call of `fn`, and its result."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    synchronize(device)
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), out


class ForwardMeter:
    """Counts a module's forward calls and rows and sums the wall time spent inside them (forward hooks).

    Time outside the forwards is the implementation's own overhead, which, unlike a ratio of two runs
    timed one after the other, is hardly affected by other processes loading the machine.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0
        self.seconds = 0.0
        self._start = 0.0

    def pre(self, _module: nn.Module, inputs: tuple) -> None:
        self.calls += 1
        self.rows += int(inputs[0].shape[0])
        if inputs[0].is_cuda:
            torch.cuda.synchronize(inputs[0].device)
        self._start = time.perf_counter()

    def post(self, _module: nn.Module, inputs: tuple, _output: object) -> None:
        if inputs[0].is_cuda:
            torch.cuda.synchronize(inputs[0].device)
        self.seconds += time.perf_counter() - self._start


@contextmanager
def count_rows(model: nn.Module) -> Iterator[ForwardMeter]:
    meter = ForwardMeter()
    handles = [model.register_forward_pre_hook(meter.pre), model.register_forward_hook(meter.post)]
    try:
        yield meter
    finally:
        for handle in handles:
            handle.remove()


# --- the protocol's shape ----------------------------------------------------------------------
def curve_points(num_pixels: int, pixels_per_step: int) -> int:
    """K: curve points per image and mode (0 .. all pixels perturbed)."""
    return math.ceil(num_pixels / pixels_per_step) + 1


def chunk_sizes(rows_per_mode: int, modes: int, batch: int) -> list[int]:
    """Rows of every forward vizlab runs: per mode, `batch`-row chunks of the N·K rows, the last shorter."""
    per_mode = [batch] * (rows_per_mode // batch) + ([rows_per_mode % batch] if rows_per_mode % batch else [])
    return per_mode * modes


# --- the limit ---------------------------------------------------------------------------------
def limit_run(model: nn.Module, x: torch.Tensor, sizes: list[int]) -> Callable[[], None]:
    """Pure forwards of pre-made inputs, one per entry of `sizes` (rows), under torch.no_grad."""
    idx = torch.arange(max(sizes), device=x.device) % x.shape[0]
    full = x[idx].contiguous()
    inputs = {s: full[:s].contiguous() for s in set(sizes)}

    def run() -> None:
        with torch.no_grad():
            for s in sizes:
                model(inputs[s])

    return run


def forward_cost_by_batch(model: nn.Module, x: torch.Tensor, sizes: list[int], rows: int,
                          device: torch.device, rounds: int = 2) -> dict[int, float]:
    """Seconds per row of a pure forward at every batch size: about `rows` rows each, the sizes
    interleaved over `rounds` rounds (the fastest kept, to damp other processes' load)."""
    runs = {b: limit_run(model, x, [b] * max(1, rows // b)) for b in sizes}
    warm_up(model, x, set(sizes))
    cost: dict[int, float] = {}
    for _ in range(rounds):
        for b in sizes:
            per_row = timed(runs[b], device)[0].wall / (b * max(1, rows // b))
            cost[b] = min(cost.get(b, math.inf), per_row)
    return cost


def warm_up(model: nn.Module, x: torch.Tensor, sizes: set[int]) -> None:
    """One untimed forward per batch size (oneDNN builds its primitives per shape)."""
    limit_run(model, x, sorted(sizes))()


# --- vizlab ------------------------------------------------------------------------------------
def vizlab_metric(model: nn.Module, pixels_per_step: int, metric_batch: int) -> DeletionInsertion:
    return DeletionInsertion(model, pixels_per_step=pixels_per_step, deletion_substrate=DELETION_SUBSTRATE,
                             insertion_substrate=INSERTION_SUBSTRATE, blur_klen=BLUR_KLEN, blur_sigma=BLUR_SIGMA,
                             batch_size=metric_batch, modes=MODES)


# --- the naive loop (RISE's CausalMetric.single_run, written here without vizlab) ---------------
def rise_blur(x: torch.Tensor, klen: int = BLUR_KLEN, nsig: float = BLUR_SIGMA) -> torch.Tensor:
    """RISE's substrate_fn for insertion: gkern(klen, nsig) per channel, conv2d with zero padding."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((klen, klen))
    delta[klen // 2, klen // 2] = 1
    k = torch.from_numpy(gaussian_filter(delta, nsig)).to(x)
    kern = torch.zeros(3, 3, klen, klen, dtype=x.dtype, device=x.device)
    for c in range(3):
        kern[c, c] = k
    return F.conv2d(x, kern, padding=klen // 2)


def naive_curve(model: nn.Module, x1: torch.Tensor, saliency: torch.Tensor, target: int, mode: str,
                pixels_per_step: int) -> np.ndarray:
    """One image (1, 3, H, W): perturb `pixels_per_step` more pixels in place per step, one forward each.

    Order: descending saliency, ties by lower pixel index (a stable sort, as vizlab ranks).
    """
    hw = x1.shape[2] * x1.shape[3]
    order = torch.from_numpy(np.argsort(-saliency.flatten().cpu().numpy(), kind="stable")).to(x1.device)
    substrate = torch.zeros_like(x1) if mode == "deletion" else rise_blur(x1)
    start, finish = (x1.clone(), substrate) if mode == "deletion" else (substrate.clone(), x1)
    start_flat, finish_flat = start.view(1, 3, hw), finish.reshape(1, 3, hw)
    n_steps = curve_points(hw, pixels_per_step) - 1
    scores = np.empty(n_steps + 1)
    with torch.no_grad():
        for i in range(n_steps + 1):
            scores[i] = model(start).softmax(1)[0, target].item()
            if i < n_steps:
                coords = order[pixels_per_step * i:pixels_per_step * (i + 1)]
                start_flat[0, :, coords] = finish_flat[0, :, coords]
    return scores


def fraction_axis(num_pixels: int, pixels_per_step: int) -> np.ndarray:
    counts = np.minimum(np.arange(curve_points(num_pixels, pixels_per_step)) * pixels_per_step, num_pixels)
    return counts / num_pixels


def naive_run(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, t: torch.Tensor,
              pixels_per_step: int) -> Callable[[], dict[str, list[np.ndarray]]]:
    def run() -> dict[str, list[np.ndarray]]:
        return {mode: [naive_curve(model, x[i:i + 1], saliency[i], int(t[i]), mode, pixels_per_step)
                       for i in range(x.shape[0])] for mode in MODES}

    return run


# --- Quantus -----------------------------------------------------------------------------------
def quantus_run(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, t: torch.Tensor,
                features_in_step: int, device: torch.device) -> Callable[[], list]:
    import quantus

    metric = quantus.PixelFlipping(features_in_step=features_in_step, perturb_baseline="black",
                                   disable_warnings=True, display_progressbar=False)
    x_np = x.detach().cpu().numpy()
    y_np = t.detach().cpu().numpy()
    a_np = saliency.detach().cpu().numpy()[:, None]  # (N, 1, H, W)
    dev = "cuda" if device.type == "cuda" else "cpu"
    return lambda: metric(model=model, x_batch=x_np, y_batch=y_np, a_batch=a_np, device=dev, channel_first=True,
                          softmax=True)


# --- report ------------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    modes: str
    forwards: str
    seconds: float  # for the whole batch (scaled where marked)
    limit: float    # the limit for the same rows (whole batch)


def markdown_table(rows: list[Row], n: int) -> str:
    lines = ["| implementation | modes | forwards | seconds | s / image | × limit |",
             "|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.modes} | {r.forwards} | {r.seconds:.2f} | {r.seconds / n:.3f} | "
                     f"{r.seconds / r.limit:.2f} |")
    return "\n".join(lines)


def forwards_text(rows: int, calls: int, sizes: str) -> str:
    return f"{rows} rows in {calls} forwards ({sizes})"


# --- main --------------------------------------------------------------------------------------
@dataclass
class Setup:
    model: nn.Module
    x: torch.Tensor         # (N, 3, H, W) normalised
    t: torch.Tensor         # (N,) predicted classes
    saliency: torch.Tensor  # (N, H, W) Grad-CAM
    k: int                  # curve points per image and mode
    sizes: list[int]        # rows of every forward vizlab (and the limit) runs
    device: torch.device
    fast: str = "float32, eager"  # the fast mode the model runs in (bench_common.apply_fast)


def build_setup(args: argparse.Namespace) -> Setup:
    device = pick_device(args.device)
    model = vizlab.load_model(args.model, device=device)
    fast = apply_fast(model, args)
    size = model.info.input_size
    x = model.normalize(load_images(args.batch, size, device))
    t = predicted_targets(model, x)
    saliency = vizlab.explain(model, x, t, method="gradcam").detach()
    k = curve_points(size * size, args.pixels_per_step)
    sizes = chunk_sizes(args.batch * k, len(MODES), args.metric_batch)
    return Setup(model, x, t, saliency, k, sizes, device, fast)


def time_vizlab_and_limit(s: Setup, args: argparse.Namespace
                          ) -> tuple[Timing, Timing, ForwardMeter, dict[str, torch.Tensor]]:
    """Limit then vizlab, --repeats times; the fastest of each, vizlab's row count and per-sample results."""
    lim_times, viz_times = [], []
    for _ in range(args.repeats):
        lim_times.append(timed(limit_run(s.model, s.x, s.sizes), s.device)[0])
        metric = vizlab_metric(s.model, args.pixels_per_step, args.metric_batch)
        with count_rows(s.model) as counter:
            viz_times.append(timed(lambda m=metric: m.evaluate(s.x, s.saliency, s.t), s.device)[0])
    fastest = min(lim_times, key=lambda r: r.wall), min(viz_times, key=lambda r: r.wall)
    return *fastest, counter, metric.per_sample()


def naive_rows(s: Setup, args: argparse.Namespace, limit: Timing,
               per_sample: dict[str, torch.Tensor]) -> tuple[list[Row], list[str]]:
    """Time the naive loop on the first --naive-images images (scaled to N); check it agrees with vizlab."""
    m, n, pps = args.naive_images, args.batch, args.pixels_per_step
    with count_rows(s.model) as c:
        naive_t, curves = timed(naive_run(s.model, s.x[:m], s.saliency[:m], s.t[:m], pps), s.device)
    scale = n / m
    row = Row(f"naive loop, RISE-style ({m} image{'s' * (m > 1)} timed, ×{scale:g})", "del + ins",
              forwards_text(round(c.rows * scale), round(c.calls * scale), "1 row each"),
              naive_t.wall * scale, limit.wall)
    notes = [f"naive loop: timed on the first {m} of {n} images and scaled ×{scale:g}; "
             f"it is {naive_t.wall / c.seconds:.3f}× its own forwards (1-row forwards)."]
    hw = s.x.shape[2] * s.x.shape[3]
    # reduced precision: 1-row and batched forwards round differently
    notes.append(check_agreement(curves, per_sample, fraction_axis(hw, pps), check_tolerance(args, AGREEMENT_TOL, 2e-2)))
    return [row], notes


def quantus_rows(s: Setup, args: argparse.Namespace, per_row: float,
                 viz_ms_per_row: float) -> tuple[list[Row], list[str]]:
    """Time Quantus PixelFlipping on the first --quantus-images images (scaled to N), and its own limit:
    pure forwards of the rows it ran, in its own forward shapes (one q-row forward per step)."""
    q, n, pps = args.quantus_images, args.batch, args.pixels_per_step
    run = quantus_run(s.model, s.x[:q], s.saliency[:q], s.t[:q], pps, s.device)
    with count_rows(s.model) as c:
        quantus_t, _ = timed(run, s.device)
    own_limit, _ = timed(limit_run(s.model, s.x[:q], [q] * c.calls), s.device)
    scale = n / q
    rows_scaled = round(c.rows * scale)
    timed_part = f"{c.calls} forwards of {q} row{'s' * (q > 1)} timed"
    rows = [
        Row(f"limit for Quantus's rows, in its forward shapes (×{scale:g})", "del",
            f"{rows_scaled} rows ({timed_part})", own_limit.wall * scale, own_limit.wall * scale),
        Row(f"Quantus PixelFlipping ({q} image{'s' * (q > 1)} timed, ×{scale:g})", "del",
            f"{rows_scaled} rows ({timed_part})", quantus_t.wall * scale, own_limit.wall * scale),
    ]
    note = (f"Quantus: timed on the first {q} of {n} images and scaled ×{scale:g}; it broadcasts the "
            f"(N, 1, H, W) map to 3 channels and flips {pps} channel values per step, hence {c.calls} steps "
            f"per image (vizlab: {s.k - 1}), one forward of all its images per step; its × limit is against pure "
            f"forwards of the same rows in the same shapes (the issue's reference: 2.4×), "
            f"{quantus_t.wall / (per_row * c.rows):.2f}× against row 1's cost per row. Per forward row: limit "
            f"{per_row * 1e3:.1f} ms, vizlab {viz_ms_per_row:.1f} ms, Quantus's limit "
            f"{own_limit.wall / c.rows * 1e3:.1f} ms, Quantus {quantus_t.wall / c.rows * 1e3:.1f} ms; Quantus is "
            f"{quantus_t.wall / c.seconds:.3f}× its own forwards (time outside them: numpy perturbation, checks).")
    return rows, [note]


def sweep_note(s: Setup, args: argparse.Namespace) -> str:
    """Per-row forward cost by batch size: the limit depends on the rows per forward (CPU caches)."""
    mb = args.metric_batch
    sizes = sorted({b for b in (1, 2, 4, 8, 16, 32, 64) if b <= mb} | {mb})
    cost = forward_cost_by_batch(s.model, s.x, sizes, max(mb, 32), s.device)
    best = min(cost, key=cost.get)
    text = ", ".join(f"{b}: {c * 1e3:.1f}" for b, c in cost.items())
    return (f"pure forward cost per row by rows per forward (ms, fastest of 2 interleaved rounds): {text}; "
            f"fastest at {best} rows/forward; a row at --metric-batch {mb} costs {cost[mb] / cost[best]:.2f}× that.")


def print_header(s: Setup, args: argparse.Namespace) -> None:
    print(f"{environment_line(args, s.device)} · {s.fast}")
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("warning: the machine is busy (1-min load average > half the logical CPUs); "
              "other processes distort CPU timings")
    n = args.batch
    print(f"targets: {', '.join(s.model.class_name(int(c)) for c in s.t[:len(IMAGE_NAMES)])}"
          f"{' (repeated)' if n > len(IMAGE_NAMES) else ''} · saliency: vizlab Grad-CAM · "
          f"K = {s.k} curve points per mode · substrates: deletion {DELETION_SUBSTRATE}, insertion "
          f"{INSERTION_SUBSTRATE}({BLUR_KLEN}, {BLUR_SIGMA:g}) · vizlab and limit: fastest of {args.repeats} "
          f"run(s), back to back; naive loop and Quantus: 1 run")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    s = build_setup(args)
    n, mb = args.batch, args.metric_batch
    print_header(s, args)
    warm_up(s.model, s.x, set(s.sizes) | {1, args.quantus_images})  # every forward shape timed below

    limit, viz, viz_count, per_sample = time_vizlab_and_limit(s, args)
    if viz_count.rows != sum(s.sizes) or viz_count.calls != len(s.sizes):
        print(f"warning: vizlab ran {viz_count.rows} rows in {viz_count.calls} forwards, "
              f"expected {sum(s.sizes)} in {len(s.sizes)}")
    rem = (n * s.k) % mb
    chunks = f"{mb}-row batches" + (f", the last of each mode {rem}" if rem and n * s.k > mb else "")
    rows = [
        Row("limit (pure forwards, pre-made inputs)", "del + ins",
            forwards_text(sum(s.sizes), len(s.sizes), chunks), limit.wall, limit.wall),
        Row("**vizlab DeletionInsertion**", "del + ins",
            forwards_text(viz_count.rows, viz_count.calls, chunks), viz.wall, limit.wall),
    ]
    notes: list[str] = []
    if not args.skip_naive:
        more_rows, more_notes = naive_rows(s, args, limit, per_sample)
        rows, notes = rows + more_rows, notes + more_notes
    if not args.skip_quantus:
        more_rows, more_notes = quantus_rows(s, args, limit.wall / sum(s.sizes),
                                             viz.wall / viz_count.rows * 1e3)
        rows, notes = rows + more_rows, notes + more_notes

    print()
    print(markdown_table(rows, n))
    print()
    print(f"× limit = seconds / the limit for the same rows: row 1 ({mb}-row batches) for vizlab and the naive "
          f"loop, Quantus's own limit row for Quantus. s / image = seconds / {n} images.")
    if not args.skip_sweep:
        notes.append(sweep_note(s, args))
    print("\n".join(notes))
    ratio = viz.wall / limit.wall
    print(f"CPU time (all threads): vizlab {viz.cpu:.2f} s, limit {limit.cpu:.2f} s ({viz.cpu / limit.cpu:.2f}×)"
          f" · load avg at the end {load_average()}")
    outside = viz.wall - viz_count.seconds
    print(f"vizlab's own overhead (time outside the model's forwards): {outside:.2f} s of {viz.wall:.2f} s "
          f"({outside / viz.wall:.1%}), i.e. vizlab = {viz.wall / viz_count.seconds:.3f}× its own forwards "
          f"(load-robust; its forwards took {viz_count.seconds / limit.wall:.2f}× the limit's)")
    print(f"goal: vizlab within {GOAL_VS_LIMIT}× of the limit: {verdict(ratio <= GOAL_VS_LIMIT)} ({ratio:.2f}×); "
          f"own overhead within {GOAL_VS_LIMIT}×: {verdict(viz.wall / viz_count.seconds <= GOAL_VS_LIMIT)} "
          f"({viz.wall / viz_count.seconds:.3f}×)")


def check_agreement(curves: dict[str, list[np.ndarray]], per_sample: dict[str, torch.Tensor],
                    fractions: np.ndarray, tol: float = AGREEMENT_TOL) -> str:
    """vizlab's curves and AUCs vs the naive loop's on the images the naive loop ran."""
    parts, ok = [], True
    for mode in MODES:
        ours_c = per_sample[f"{mode}_curve"].double().cpu().numpy()
        ours_a = per_sample[f"{mode}_auc"].double().cpu().numpy()
        naive_c = np.stack(curves[mode])
        naive_a = np.array([np.trapezoid(c, fractions) for c in naive_c])
        m = naive_c.shape[0]
        dc = np.abs(ours_c[:m] - naive_c).max()
        da = np.abs(ours_a[:m] - naive_a).max()
        ok &= bool(da < tol)
        parts.append(f"{mode} AUC vizlab {ours_a[0]:.6f} vs naive {naive_a[0]:.6f} "
                     f"(max |Δ AUC| {da:.1e}, max |Δ curve| {dc:.1e})")
    return f"check ({verdict(ok)}, tol {tol:.0e}, image 1): " + "; ".join(parts)


if __name__ == "__main__":
    main()
