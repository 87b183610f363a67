"""Extremal perturbation against its oracle: the defect (the all-ones start ranked by the mask
generator's ripple), the optimality check, and ground-truth localisation on the synthetic sets.

The defect: from the all-ones start the generated mask is not flat — the softmax pooling leaves a
ripple of period `step` (±0.3 %) and a bump along the image border. The sorted area term ranks the
mask values, so at t = 0 its "keep" set is that ripple's top, mostly the border band, not the
evidence; its push (12× the model term's at t = 0 on shapes_cnn) then seeds the blob layout. The
relaxed warm-up (`area_warmup`, mean-only area term) pushes every value alike, so the model term
decides the ranking before the sorted term takes over. A second defect: a short warm-up (100
iterations) handed over while the mask was still about half the input, its model term saturated,
so the ranking the sorted term kept was not the evidence's; the warm-up now lasts half the run.
A third, STEP's alone: its core term (a sorted ranking of kernel positions) switched on at iteration
101, inside the warm-up; its k (⌈a·T·S²/ΣK⌉) asked for a share of positions that is not the area's
(18 % on 8-frame clips), so the core and area terms pulled apart; and its 7 × 11 × 11 kernel, chosen
for 16-frame 112-px clips, spans 7 of 8 frames and the object's width on the 48-px clips.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

import vizlab
from tests.conftest import synthetic_model
from vizlab.methods import build
from vizlab.methods.perturbation.mask_generator import MaskGenerator
from vizlab.methods.perturbation.objectives import area_loss
from vizlab.methods.perturbation.oracle import optimality_check
from vizlab.methods.perturbation.scale import coarse_warning, scale_for
from vizlab.metrics import kept_frames, object_recall


# ----------------------------------------------------------------------------- the defect, model-free
def test_all_ones_start_is_ranked_by_the_generator_ripple_and_the_warmup_is_not():
    gen = MaskGenerator((64, 64), 2, 6.0)  # the scale rule's sizes for 64-px images
    area = 0.1
    ones = torch.ones(1, 1, *gen.shape_in, requires_grad=True)
    image, full = gen.generate(ones)
    assert float((image.max() - image.min()).detach()) > 5e-3  # not flat
    top = image[0, 0].flatten().topk(round(area * 64 * 64)).indices
    rows, cols = top // 64, top % 64
    on_border = ((rows < 6) | (rows >= 58) | (cols < 6) | (cols >= 58)).float().mean()
    assert on_border > 0.6, on_border  # the 6-px border band is 34 % of the image, 73 % of the initial top set
    # what each term asks of the full-mask values (ties and float rounding, which differ between
    # CPUs, may move single values in or out of the top set; the properties below do not depend on it)
    leaf = full.detach().requires_grad_(True)
    zeros = torch.tensor([leaf.numel() - round(area * 64 * 64)])
    (sorted_grad,) = torch.autograd.grad(area_loss(leaf.view(1, 1, -1), zeros)[0], leaf)
    share = 1 - zeros.float() / leaf.numel()
    (relaxed_grad,) = torch.autograd.grad(((leaf.mean() - share) ** 2)[0], leaf)
    up = sorted_grad.flatten() < 0
    values = leaf.detach().flatten()
    # the sorted term raises exactly its top set (the ripple's top) and lowers every other value: a ranking
    assert int(up.sum()) == leaf.numel() - int(zeros)
    assert float(values[up].min()) >= float(values[~up].max())
    # the relaxed term lowers every value alike
    assert torch.allclose(relaxed_grad, relaxed_grad.flatten()[0].expand_as(relaxed_grad), rtol=1e-6, atol=0)
    assert float(relaxed_grad.flatten()[0]) > 0


def test_softmax_pooling_cannot_regrow_a_region_at_its_edge():
    """The second defect (open): with TorchRay's softmax pooling, ∂m/∂p_j = s_j·w_j·(1 + c·(w_j·p_j − m)),
    negative wherever the mask m is above 1/c (c = 20) and w_j·p_j is low. So a parameter that fell to
    0 next to (or under) a kept region gets a gradient that pushes it further down: "more mask here"
    cannot regrow a region at its edge, the optimiser can only shrink what the first iterations kept,
    and from the all-ones start it ends in a worse basin than the oracle's (test below)."""
    for pooling, sign in (("softmax", -1), ("sum", 1)):
        gen = MaskGenerator((64, 64), 2, 6.0, pooling=pooling)
        params = torch.zeros(1, 1, *gen.shape_in)
        c = gen.shape_in[0] // 2
        params[..., c - 2:c + 3, c - 2:c + 3] = 1  # a kept region of 5 × 5 parameters
        params.requires_grad_(True)
        (grad,) = torch.autograd.grad(gen.generate(params)[1].sum(), params)
        inside, neighbour, far = (float(grad[0, 0, c, c]), float(grad[0, 0, c, c + 3]), float(grad[0, 0, c, c + 8]))
        assert inside > 0
        assert sign * neighbour > 0 and sign * far > 0, (pooling, neighbour, far)


def test_default_run_starts_with_the_relaxed_term_and_strict_original_does_not(tiny2d):
    x = torch.randn(1, 3, 24, 24)
    for strict, warmup, warm in ((False, None, 5), (False, 3, 3), (False, 50, 10), (True, None, 0)):
        method = build("extremal", tiny2d, max_iter=10, area_warmup=warmup, strict_original=strict, step=2, sigma=3.0,
                       max_blur=5.0, progress=False)
        assert method.schedule.area_warmup == warm  # null: half the run; at most max_iter; strict: none
        info = method(x, 1, return_info=True)
        objective = method.objective(x, info.target)
        params = torch.ones(objective.rows, 1, *objective.generator.shape_in)
        _, _, _, relaxed = objective.terms(params, None, 300.0, 0.0, relaxed=True)
        _, _, _, sorted_term = objective.terms(params, None, 300.0, 0.0, relaxed=False)
        first = info.extras["history"][0, 0, 1, 0]
        assert torch.allclose(first, (relaxed if warm else sorted_term)[0], rtol=1e-5)


def test_restarts_keep_each_masks_best_start_and_the_first_start_is_the_originals(tiny2d, tiny3d):
    """restarts=K: every (sample, area) mask is the one of its K runs with the lowest final objective;
    run k is exactly an independent run from start k (copy 0: all ones, the single-start run), so
    restarts can only lower the objective; restarts=1 is the single run unchanged."""
    from vizlab.methods.perturbation.optimise import optimise_masks
    from vizlab.methods.perturbation.restarts import restart_starts

    for net, x, name in ((tiny2d, torch.randn(3, 3, 24, 24), "extremal"), (tiny3d, torch.randn(2, 3, 4, 16, 16), "ep3d")):
        options = dict(max_iter=12, step=2, sigma=3.0, max_blur=5.0, areas=[0.1, 0.3], progress=False)
        single = build(name, net, **options)(x, 1, return_info=True)
        multi_method = build(name, net, restarts=3, **options)
        multi = multi_method(x, 1, return_info=True)
        objective = multi_method.objective(x, multi.target, copies=3)
        starts = restart_starts(objective, 0.5)
        per_copy = starts.shape[0] // 3
        assert torch.equal(starts[:per_copy], torch.ones_like(starts[:per_copy]))
        assert starts[per_copy:].min() >= 0.5 and starts[per_copy:].max() < 1
        one = multi_method.objective(x, multi.target)
        runs = [optimise_masks(one, init=starts[k * per_copy:(k + 1) * per_copy]) for k in range(3)]
        finals = torch.stack([one.final(r.params).sum(-1) for r in runs])            # (3, N·A)
        best = finals.argmin(0)
        assert torch.equal(multi.extras["restart"].flatten(), best)
        n, a = multi.extras["restart"].shape
        chosen = torch.stack([runs[int(k)].masks[i] for i, k in enumerate(best)]).view(n, a, *single.raw.shape[2:])
        assert torch.allclose(multi.extras["masks"], chosen, atol=1e-5)
        ours = one.final(multi.extras["params"].reshape(-1, 1, *one.generator.shape_in)).sum(-1)
        assert torch.allclose(ours, finals.min(0).values, rtol=1e-5)
        alone = one.final(single.extras["params"].reshape(-1, 1, *one.generator.shape_in)).sum(-1)
        assert torch.allclose(finals[0], alone, rtol=1e-5) and (ours <= alone + 1e-5).all()
        assert torch.equal(single.extras["restart"], torch.zeros(n, a, dtype=torch.long))
        assert multi_method.sample_details(multi, 0)["restart"] == multi.extras["restart"][0].tolist()
        assert "restart" not in build(name, net, **options).sample_details(single, 0)


@pytest.mark.parametrize(("option", "value", "match"), [("restarts", 0, "restarts must be an integer >= 1"),
                                                         ("restarts", 1.5, "restarts must be an integer"),
                                                         ("restart_noise", 1.5, "restart_noise must be a number")])
def test_bad_restart_options(tiny2d, option, value, match):
    from vizlab.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        build("extremal", tiny2d, **{option: value})


def test_scale_rule_and_the_coarse_warning(tiny2d):
    assert scale_for(224, video=False) == scale_for(224, False)
    s = scale_for(224, False)
    assert (s.step, s.sigma, s.max_blur) == (7, 21.0, 20.0)  # TorchRay's at its size
    v = scale_for(112, True)
    assert (v.step, v.sigma, v.max_blur) == (7, 11.0, 20.0)  # the video seed's at its size
    small = scale_for(64, False)
    assert (small.step, round(small.sigma, 2), round(small.max_blur, 2)) == (2, 6.0, 11.43)
    assert coarse_warning(small.sigma, 64, 64, False) is None
    assert "too coarse" in coarse_warning(21.0, 64, 64, False)
    with pytest.warns(UserWarning, match="too coarse"):
        build("extremal", tiny2d, max_iter=1, sigma=21.0, step=7, progress=False)(torch.randn(1, 3, 64, 64), 0)
    method = build("extremal", tiny2d, max_iter=1, progress=False)
    assert method.sizes(64, 64) == small
    strict = build("extremal", tiny2d, max_iter=1, strict_original=True, progress=False)
    with pytest.warns(UserWarning, match="too coarse"):
        assert (strict.sizes(64, 64).step, strict.sizes(64, 64).sigma) == (7, 21.0)


# ----------------------------------------------------------------------------- trained models (slow)
def shapes(model, n: int):
    from vizlab.data.synthetic_shapes import SyntheticShapes

    batch = next(iter(DataLoader(SyntheticShapes(n, seed=777), batch_size=n)))
    return model.normalize(batch["image"]), batch["label"], batch["mask"]


def motion(model, n: int, frames: int = 8):
    from vizlab.data.synthetic_motion import SyntheticMotion

    batch = next(iter(DataLoader(SyntheticMotion(n, frames=frames, seed=5), batch_size=n)))
    return model.normalize(batch["image"]), batch["label"], batch["mask"]


def gradcam_recall(model, x, y, masks, area=0.1) -> float:
    return float(object_recall(vizlab.explain(model, x, y, method="gradcam"), masks, area).nanmean())


@pytest.mark.slow
def test_warmup_fixes_the_start_on_shapes(request, monkeypatch):
    """Image EP, 8 shapes images, 300 iterations (λ schedule compressed to the default end weight):
    object recall at area 0.1 with the relaxed warm-up against the original start."""
    model = synthetic_model(request, monkeypatch, "shapes_cnn")
    x, y, masks = shapes(model, 8)
    options = {"max_iter": 300, "area_growth": 1.00937, "lr": 0.05, "progress": False}
    fixed = object_recall(build("extremal", model, **options)(x, y), masks, 0.1).mean()
    original = object_recall(build("extremal", model, area_warmup=0, **options)(x, y), masks, 0.1).mean()
    assert fixed > original + 0.1, (fixed, original)


@pytest.mark.slow
def test_a_warmup_that_lasts_until_the_mask_has_shrunk_ranks_the_evidence(request, monkeypatch):
    """The second defect: a warm-up of min(100, max_iter // 5) iterations hands over to the sorted term
    while the mask is still about half the clip (full-mask mean 0.43 at 2D-EP's 60th of 300
    iterations) and its model term saturated; the sorted term then keeps that ranking. The default
    warm-up (half the run) hands over once the mask is near its area. 2D-EP, 6 motion clips, 300
    iterations (measured: object recall 0.706 vs 0.601)."""
    model = synthetic_model(request, monkeypatch, "motion_cnn")
    x, y, masks = motion(model, 6)
    method = build("ep2d", model, max_iter=300, progress=False)
    assert method.schedule.area_warmup == 150
    fixed = float(object_recall(method(x, y), masks, 0.1).mean())
    early = float(object_recall(build("ep2d", model, max_iter=300, area_warmup=60, progress=False)(x, y), masks,
                                0.1).mean())
    print(f"ep2d recall, warm-up 150: {fixed:.3f}, warm-up 60: {early:.3f}")
    assert fixed > early + 0.05, (fixed, early)


@pytest.mark.slow
def test_steps_core_term_sized_counted_and_started_with_the_sorted_area_term_ranks_the_evidence(request, monkeypatch):
    """The third defect (STEP). 6 motion clips (8 × 48²), 300 iterations: the seed's core term (from
    iteration 101, 7 × 11 × 11 kernel, k = ⌈a·T·S²/ΣK⌉) against the default one (with the sorted area
    term, kernel sized from the clip: 4 × 5 × 5, k = ⌈a · positions⌉). Measured: object recall 0.494 vs
    0.709 (Grad-CAM 0.693); the changes one by one: start 0.538, start + count 0.654, all three 0.709."""
    model = synthetic_model(request, monkeypatch, "motion_cnn")
    x, y, masks = motion(model, 6)
    fixed = build("step", model, max_iter=300, progress=False)
    assert fixed.schedule.core_start == 150 and fixed.kernel_size(8, 48, 48) == (4, 5, 5)
    ours = float(object_recall(fixed(x, y), masks, 0.1).mean())
    seed = build("step", model, max_iter=300, core_start=101, core_size=[7, 11, 11], core_count="volume",
                 progress=False)
    before = float(object_recall(seed(x, y), masks, 0.1).mean())
    print(f"step recall, default core term {ours:.3f}, the seed's {before:.3f}")
    assert ours > before + 0.1, (ours, before)


def optimality_setup(request, monkeypatch, name: str, frames: int = 8, video_lr: float = 0.05, restarts: int = 1):
    """(method, x, y, object masks) of the optimality tests: image EP on 8 shapes images at 300
    iterations (λ schedule compressed to the default end weight, lr 0.05) from `restarts` starts,
    the video methods on 6 motion clips at 300 iterations and `video_lr` (their default 0.05)."""
    if name == "extremal":
        model = synthetic_model(request, monkeypatch, "shapes_cnn")
        x, y, masks = shapes(model, 8)
        method = build(name, model, max_iter=300, area_growth=1.00937, lr=0.05, restarts=restarts, progress=False)
        return method, x, y, masks
    model = synthetic_model(request, monkeypatch, "motion_cnn")
    x, y, masks = motion(model, 6, frames)
    return build(name, model, max_iter=300, lr=video_lr, progress=False), x, y, masks


@pytest.mark.slow
@pytest.mark.parametrize(("name", "frames", "restarts"), [
    ("extremal", 1, 4),  # 6/8 (27.9 vs 27.4); one start: 4/8 (29.0), its objective has many local minima
    ("ep3d", 8, 1),  # 4/6 at lr 0.1 (2.37 vs 3.91); 1/6 at the default 0.05, whose mask has not shrunk by 300
    ("step", 8, 1),  # 6/6; the object-shaped oracle still pays STEP's core term (17.8 vs 9.15; 80.6 before the fix)
])
def test_optimality_check(request, monkeypatch, name, frames, restarts):
    """The optimised mask's objective vs the oracle's (the object, sized to the area, projected on
    the generator) at reduced iterations that converge: 300, with the video methods' learning rate
    doubled to 0.1 (the relaxed warm-up shrinks the mask geometrically at a rate ∝ lr, so 300
    iterations at 0.1 shrink it as far as 600 at 0.05), image EP best of 4 starts; the fraction of
    samples within 5 % must be most (> 0.5)."""
    method, x, y, masks = optimality_setup(request, monkeypatch, name, frames, video_lr=0.1, restarts=restarts)
    report = optimality_check(method, x, y, masks)
    print(name, report.summary())
    assert report.fraction > 0.5, report.summary()


@pytest.mark.slow
def test_restarts_are_the_fix_for_image_eps_local_minima(request, monkeypatch):
    """Regression test for image EP's optimality defect: on 8 shapes images (300 iterations) one start
    ends within 5 % of the oracle's objective on 4/8, best of 4 starts on 6/8 (mean objective 29.0 →
    27.9, oracle 27.4), and the restarts keep the object (recall at area 0.1: 0.79 → 0.79)."""
    fractions, recalls = [], []
    for restarts in (1, 4):
        method, x, y, masks = optimality_setup(request, monkeypatch, "extremal", restarts=restarts)
        info = method(x, y, return_info=True)
        fractions.append(optimality_check(method, x, y, masks, info=info).fraction)
        recalls.append(float(object_recall(info.saliency, masks, 0.1).mean()))
    print("within 5 % of the oracle, 1 / 4 starts:", fractions, "recall:", recalls)
    assert fractions[0] <= 0.5 < fractions[1] and recalls[1] >= recalls[0] - 0.02, (fractions, recalls)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["extremal", "ep3d"])
def test_the_oracle_basin_is_lower_than_where_the_all_ones_start_ends(request, monkeypatch, name):
    """Why the optimality check fails: not the data. The same optimiser (same schedule, iterations and
    objective) started at the oracle's parameters ends at a lower objective than started from all
    ones on most samples, and still holds the object — a better optimum exists and the all-ones
    start does not reach it (measured: extremal 24.8 vs 30.3 on 8/8 images, recall 0.93 vs 0.71;
    ep3d 2.52 vs 2.99 on 6/6 clips, recall 0.99 vs 0.64)."""
    from vizlab.methods.perturbation.optimise import optimise_masks

    method, x, y, masks = optimality_setup(request, monkeypatch, name)
    report = optimality_check(method, x, y, masks)
    objective = method.objective(x, y)
    from_oracle = optimise_masks(objective, init=report.oracle_params.reshape(-1, 1, *objective.generator.shape_in))
    ends = objective.final(from_oracle.params).sum(-1)
    lower = ends < report.optimised_objective.flatten()
    assert lower.float().mean() >= 0.75, (ends, report.optimised_objective)
    kept = from_oracle.masks.view(*masks.shape) if name == "ep3d" else from_oracle.masks[:, 0]
    assert float(object_recall(kept, masks, 0.1).nanmean()) >= 0.85


@pytest.mark.slow
def test_image_ep_reaches_gradcam_object_recall_on_shapes(request, monkeypatch):
    """Image EP at its defaults (800 iterations; sizes from the 64-px input) on 8 shapes images:
    object recall at the method's area (0.1) at least Grad-CAM's on the same images."""
    model = synthetic_model(request, monkeypatch, "shapes_cnn")
    x, y, masks = shapes(model, 8)
    ours = float(object_recall(build("extremal", model, progress=False)(x, y), masks, 0.1).mean())
    reference = gradcam_recall(model, x, y, masks)
    print(f"extremal recall {ours:.3f} grad-cam {reference:.3f}")
    assert ours >= reference, (ours, reference)


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    "ep2d",  # 0.706 vs Grad-CAM 0.693 (0.60 with the 60-iteration warm-up before the fix)
    "step",  # 0.709 vs 0.693 (0.49 with the seed's core term)
])
def test_video_ep_reaches_gradcam_object_recall_on_motion(request, monkeypatch, name):
    """2D-EP / STEP on 6 motion clips (8 × 48²), defaults but 300 iterations: object recall at the
    method's area (0.1) at least Grad-CAM's on the same clips."""
    model = synthetic_model(request, monkeypatch, "motion_cnn")
    x, y, masks = motion(model, 6)
    ours = float(object_recall(build(name, model, max_iter=300, progress=False)(x, y), masks, 0.1).mean())
    reference = gradcam_recall(model, x, y, masks)
    print(f"{name} recall {ours:.3f} grad-cam {reference:.3f}")
    assert ours >= reference, (ours, reference)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ep2d", "ep3d", "step"])
def test_video_ep_reaches_gradcam_object_recall_on_16_frame_clips(request, monkeypatch, name):
    """At the video zoo's clip length, on motion_cnn16 (the same network trained on 16-frame clips):
    2D-EP / 3D-EP (over the frames it keeps) / STEP on 6 motion clips (16 × 48²), defaults but 300
    iterations, reach Grad-CAM's object recall at area 0.1 (measured: 0.761 / 0.756 / 0.705 vs
    Grad-CAM 0.663; with the 8-frame-trained motion_cnn at 2000 iterations 2D-EP was 0.55 vs 0.57)."""
    model = synthetic_model(request, monkeypatch, "motion_cnn16")
    assert model.info.frames == 16
    x, y, masks = motion(model, 6, frames=16)
    saliency = build(name, model, max_iter=300, progress=False)(x, y)
    kept = kept_frames(saliency, 0.5) if name == "ep3d" else None
    ours = float(object_recall(saliency, masks, 0.1, frames=kept).nanmean())
    reference = gradcam_recall(model, x, y, masks)
    print(f"{name} recall {ours:.3f} grad-cam {reference:.3f} (16 frames, motion_cnn16)")
    assert ours >= reference, (ours, reference)


@pytest.mark.slow
def test_3d_ep_recall_over_all_and_kept_frames(request, monkeypatch):
    """3D-EP keeps one area for the whole clip, so it may keep few frames: recall over all frames and
    over the frames it keeps (mask max >= 0.5); on the kept frames it must reach Grad-CAM's recall
    (measured: 0.70 over all frames, 0.73 over the kept 96 % of the frames, Grad-CAM 0.69)."""
    model = synthetic_model(request, monkeypatch, "motion_cnn")
    x, y, masks = motion(model, 6)
    saliency = build("ep3d", model, max_iter=300, progress=False)(x, y)
    kept = kept_frames(saliency, 0.5)
    every = float(object_recall(saliency, masks, 0.1).mean())
    on_kept = float(object_recall(saliency, masks, 0.1, frames=kept).nanmean())
    reference = gradcam_recall(model, x, y, masks)
    print(f"ep3d recall all frames {every:.3f} kept frames {on_kept:.3f} ({float(kept.float().mean()):.2f} of "
          f"the frames kept) grad-cam {reference:.3f}")
    assert on_kept >= reference, (on_kept, reference)


def test_oracle_masks_sit_on_the_object_and_the_figure_shows_both(tiny2d):
    from vizlab.methods.perturbation.oracle import oracle_figure

    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    objects = torch.zeros(1, 32, 32, dtype=torch.bool)
    objects[:, 10:20, 12:22] = True  # 100 px, 9.8 % of the image
    method = build("extremal", tiny2d, areas=[0.03, 0.2], max_iter=2, step=2, sigma=3.0, max_blur=5.0,
                   progress=False)
    info = method(x, 1, return_info=True)
    report = optimality_check(method, x, None, objects, info=info, fit_steps=40)
    assert report.optimised.shape == report.oracle.shape == (1, 2, 2) and report.passed.shape == (1, 2)
    small, large = report.oracle_masks[:, 0], report.oracle_masks[:, 1]
    inside = (small * objects).flatten(1).sum(1) / small.flatten(1).sum(1)
    assert torch.all(inside > 0.8), inside                               # smaller than the object: inside it
    covered = (large * objects).flatten(1).sum(1) / objects.flatten(1).sum(1)
    assert torch.all(covered > 0.9), covered                             # larger: covers it
    assert torch.all(large.flatten(1).mean(1) > small.flatten(1).mean(1) + 0.1)
    assert 0 <= report.fraction <= 1 and set(report.summary()) == {"fraction", "tolerance", "optimised", "oracle"}
    picture = oracle_figure(x[0], report, info.extras["masks"], index=0, area=1, scale=3)
    assert picture.dtype.name == "uint8" and picture.shape == (2 * 22 + 96, 2 * 96 + 4, 3)
    with pytest.raises(vizlab.errors.InputError, match="do not match the input"):
        optimality_check(method, x, None, objects[:, :16], info=info)


# ----------------------------------------------------------------------------- the explain loop
def test_explain_loop_oracle_check_writes_both_objectives_and_the_figure(tmp_path, request, monkeypatch):
    """task.oracle_check=true from the command line: per sample the optimised and the oracle objective
    (equal to the Python check on the same images), the verdict, the optimised-vs-oracle figure and the
    share in the summary; a method without an objective and data without masks fail with one line."""
    import json

    import numpy as np
    from conftest import PYTHON, run_cli
    from PIL import Image

    model = synthetic_model(request, monkeypatch, "shapes_cnn")
    args = ["model=shapes_cnn", "dataset=synthetic_shapes", "dataset.num_samples=2", "method=extremal",
            "method.max_iter=20", "method.progress=false", "task.oracle_check=true", "logger=none", "metric=none"]
    proc = run_cli(PYTHON, "run.py", *args, f"paths.output_root={tmp_path / 'ok'}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "oracle_fraction" in proc.stdout
    (path,) = (tmp_path / "ok").rglob("results.json")
    results = json.loads(path.read_text())
    samples = results["samples"]
    from vizlab.data.synthetic_shapes import SyntheticShapes

    batch = next(iter(DataLoader(SyntheticShapes(2, seed=1234), batch_size=2)))  # conf/dataset/synthetic_shapes.yaml
    x, masks = model.normalize(batch["image"]), batch["mask"]
    method = build("extremal", model, max_iter=20, progress=False)
    report = optimality_check(method, x, torch.tensor([s["target"] for s in samples]), masks)
    mine = [s["details"]["optimised_objective"][0] for s in samples]
    oracle = [s["details"]["oracle_objective"][0] for s in samples]
    assert np.allclose(mine, report.optimised_objective[:, 0].tolist(), rtol=1e-3)
    assert np.allclose(oracle, report.oracle_objective[:, 0].tolist(), rtol=1e-3)
    passed = [s["details"]["as_good_as_oracle"][0] for s in samples]
    assert passed == report.passed[:, 0].tolist()
    assert results["summary"]["oracle_fraction"] == pytest.approx(sum(passed) / 2)
    figure = path.parent / samples[0]["figures"]["oracle"]
    width, height = Image.open(figure).size
    assert width > 2 * 3 * 64 and height > 3 * 64  # two panels at 3× with caption bars
    common = ["task.oracle_check=true", "logger=none", "metric=none"]
    for bad, message in ((["model=shapes_cnn", "dataset=synthetic_shapes", "method=gradcam"],
                          "method=gradcam has no such objective. Use method=extremal"),
                         (["model=efficientnet_lite0", "dataset=samples", "method=extremal"],
                          "dataset=samples has none")):
        out = tmp_path / "bad"
        proc = run_cli(PYTHON, "run.py", *common, *bad, f"paths.output_root={out}", timeout=300)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr and not [p for p in out.rglob("*") if p.is_file()]
