"""Feature visualisation parts without a network: schedules and octave chaining, the centre mask,
blur and TV against OpenCV / scikit-image, Barron's loss against its closed forms, the Fourier
parametrisation, clustering and member selection, the loss terms and the broadcast factor."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from scipy.special import k1

from vizlab.errors import ConfigError
from vizlab.featvis import (
    AdaptiveRobustLoss,
    FourierImage,
    Octave,
    centre_mask,
    find_facets,
    gaussian_blur,
    linear_value,
    loss_terms,
    plan_steps,
    random_transform,
    resolve_bugs,
    tv_bregman,
)
from vizlab.featvis.clustering import inverse_distance_weights, top_channels
from vizlab.featvis.optimise import activation_weights
from vizlab.featvis.robust import log_partition, partition, rho


# --- schedules -------------------------------------------------------------------------------------
def test_schedule_starts_at_i1_and_ends_at_iN():
    assert linear_value(0.5, 0.08, 1, 2001) == 0.5
    assert linear_value(0.5, 0.08, 2001, 2001) == pytest.approx(0.08, abs=1e-15)
    assert linear_value(420, 340, 1001, 2001) == pytest.approx(380)
    assert linear_value(3.0, 7.0, 1, 1) == 3.0
    v = Octave().values(2001, 2001)
    assert v == pytest.approx({"lr": 0.08, "mask_sigma": 340, "sigma": 0.2, "denoise_weight": 8, "lambda": 5e-4})


def test_octave_chaining_continues_count_and_schedules():
    a, b = Octave(iterations=3), Octave(iterations=4)
    steps = plan_steps([a, b], iterations=99)
    assert [s.i for s in steps] == [1, 2, 3, 4, 5, 6, 7]
    assert [(s.octave, s.position, s.length) for s in steps] == [
        (0, 1, 3), (0, 2, 3), (0, 3, 3), (1, 1, 4), (1, 2, 4), (1, 3, 4), (1, 4, 4)]
    # each octave runs its own schedule from start to end
    assert b.values(1, 4)["lr"] == b.start_lr and b.values(4, 4)["lr"] == pytest.approx(b.end_lr)


def test_original_chaining_restarts_near_the_midpoint():
    octave = Octave()
    steps = plan_steps([octave, octave], iterations=2001, original=True)
    second = [s for s in steps if s.octave == 1]
    assert len(second) == 2002 and second[0].i == 2001 and second[-1].i == 4002  # repeats 2001, one extra step
    lr = octave.values(second[0].position, second[0].length)["lr"]
    midpoint = (octave.start_lr + octave.end_lr) / 2
    assert abs(lr - midpoint) < 0.001 * octave.start_lr  # 0.2901 vs 0.29: near the midpoint, not 0.5
    assert octave.values(second[-1].position, second[-1].length)["lr"] == pytest.approx(octave.end_lr)


def test_octave_config_errors():
    with pytest.raises(ConfigError, match="unknown key"):
        Octave.from_config({"scale": 1.0, "start_lrr": 0.1})
    with pytest.raises(ConfigError, match="scale must be >= 1"):
        Octave.from_config({"scale": 0.5})
    with pytest.raises(ConfigError, match="window_step"):
        Octave.from_config({"window_step": 0}, 2)
    with pytest.raises(ConfigError, match="empty"):
        plan_steps([], 10)
    with pytest.raises(ConfigError, match="unknown bug"):
        resolve_bugs(["broadcast", "typo"])
    assert resolve_bugs(True) >= {"broadcast", "schedules", "members"} and resolve_bugs(False) == frozenset()


# --- centre mask, blur, TV -------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [420.0, 340.0, 150.0])
def test_centre_mask_effective_std_is_sigma_over_6_004(sigma):
    side = 1201
    mask = centre_mask(side, side, sigma, dtype=torch.float64)
    assert mask.max() == 1 and mask.min() == 0
    row = mask[side // 2, side // 2:].numpy()          # profile from the centre outwards, r = 0, 1, 2, ...
    assert row.argmax() == 1                             # the original's (r − 1): the peak is the ring r = 1
    r_half = np.interp(0.5, row[::-1][:-1], np.arange(len(row))[::-1][:-1])  # half maximum on the falling side
    std = (r_half - 1) / math.sqrt(2 * math.log(2))      # FWHM / 2 = √(2 ln 2)·std
    assert std == pytest.approx(sigma / 6.004, rel=2e-3)


def test_gaussian_blur_matches_opencv():
    rng = np.random.default_rng(0)
    img = rng.random((40, 50, 3)).astype(np.float32)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    for sigma in (0.2, 0.9, 2.5):
        r = max(1, math.ceil(3 * sigma))
        ref = cv2.GaussianBlur(img, (2 * r + 1, 2 * r + 1), sigma, borderType=cv2.BORDER_REFLECT_101)
        ours = gaussian_blur(x, sigma)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(ours, ref, atol=2e-5)
    clip = x[:, :, None].expand(1, 3, 4, 40, 50)          # clips: each frame on its own
    assert torch.allclose(gaussian_blur(clip, 0.9)[:, :, 2], gaussian_blur(x, 0.9), atol=1e-6)


def _rof_energy(u: np.ndarray, f: np.ndarray, weight: float) -> float:
    ux = np.diff(u, axis=1, append=u[:, -1:])
    uy = np.diff(u, axis=0, append=u[-1:])
    return float(np.sqrt(ux ** 2 + uy ** 2).sum() + weight * ((u - f) ** 2).sum())


def test_tv_bregman_against_skimage():
    from skimage import data
    from skimage.restoration import denoise_tv_bregman

    img = data.astronaut()[::8, ::8].astype(np.float64) / 255   # 64² RGB
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 0.1, img.shape), 0, 1)
    x = torch.from_numpy(noisy).permute(2, 0, 1)[None].float()
    for weight in (2.0, 8.0):
        ref = denoise_tv_bregman(noisy, weight=weight, max_num_iter=100, eps=1e-3)   # the original's call
        ours = tv_bregman(x, weight)[0].permute(1, 2, 0).double().numpy()
        change = np.abs(ref - noisy)[2:-2, 2:-2].mean()
        assert np.abs(ours - ref)[2:-2, 2:-2].mean() < 0.06 * change        # same result away from the border
        # the same ROF problem: our energy is at or below skimage's, far below the input's
        e_ours, e_ref, e_in = (_rof_energy(u, noisy, weight) for u in (ours, ref, noisy))
        assert e_ours <= 1.005 * e_ref and e_ours < 0.7 * e_in
    assert (torch.from_numpy(ours).std() < torch.from_numpy(noisy).std())


def test_tv_bregman_stops_per_image():
    torch.manual_seed(0)
    flat = torch.full((1, 3, 24, 24), 0.4)                    # converges at once
    noisy = torch.rand(1, 3, 24, 24)
    both = tv_bregman(torch.cat([flat, noisy]), 2.0)
    assert torch.allclose(both[:1], flat)
    assert torch.allclose(both[1:], tv_bregman(noisy, 2.0), atol=1e-6)


# --- Barron's adaptive loss ----------------------------------------------------------------------
def test_partition_function_closed_forms():
    z = partition(np.array([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(z, [math.pi * math.sqrt(2), 2 * math.e * k1(1.0), math.sqrt(2 * math.pi)], rtol=1e-10)
    alphas = torch.linspace(0, 2, 101, dtype=torch.float64)
    np.testing.assert_allclose(log_partition(alphas).numpy(), np.log(partition(alphas.numpy())), atol=1e-4)


def test_rho_special_cases():
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    assert torch.allclose(rho(x, torch.tensor(1.0, dtype=torch.float64)), torch.sqrt(x ** 2 + 1) - 1, atol=1e-12)
    assert torch.allclose(rho(x, torch.tensor(1.999999, dtype=torch.float64)), 0.5 * x ** 2, rtol=1e-4, atol=1e-6)
    assert torch.allclose(rho(x, torch.tensor(1e-6, dtype=torch.float64)), torch.log1p(0.5 * x ** 2), atol=1e-5)
    assert torch.allclose(rho(2 * x, torch.tensor(0.5, dtype=torch.float64), 2.0),
                          rho(x, torch.tensor(0.5, dtype=torch.float64)), atol=1e-12)


def test_adaptive_loss_is_a_normalised_density_with_learnable_alpha_and_scale():
    loss = AdaptiveRobustLoss((2,)).double()
    assert torch.allclose(loss.alpha(), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(loss.scale(), torch.ones(2, dtype=torch.float64))
    t = torch.linspace(-1000, 1000, 1_000_001, dtype=torch.float64)
    for alpha, scale in ((0.3, 0.5), (1.0, 2.0), (1.7, 0.1)):
        loss.alpha_init, loss.scale_init = alpha, scale
        loss.reset()
        with torch.no_grad():
            density = torch.exp(-loss(t[:, None].expand(-1, 2)))[:, 0]
        assert torch.trapezoid(density, t).item() == pytest.approx(1.0, abs=5e-4)
    loss.alpha_init, loss.scale_init = 1.0, 1.0
    loss.reset()
    residual = torch.tensor([[0.01, 30.0]], dtype=torch.float64)
    loss(residual).sum().backward()
    # small residuals want a smaller scale, large ones a larger one; both latents get gradients
    assert loss.latent_scale.grad[0] > 0 > loss.latent_scale.grad[1]
    assert (loss.latent_alpha.grad != 0).all()


# --- Fourier parametrisation ---------------------------------------------------------------------
def test_fourier_image_round_trip_and_identity_transform():
    torch.manual_seed(0)
    for shape in ((2, 3, 37, 50), (2, 3, 6, 24, 24)):
        x = torch.rand(shape) * 0.9 + 0.05
        image = FourierImage.from_images(x)
        assert torch.allclose(image(), x, atol=1e-5)
        image().sum().backward()
        assert image.spectrum.grad is not None and image.spectrum.grad.abs().sum() > 0
    x = torch.rand(2, 3, 40, 40)
    same = random_transform(x, torch.Generator().manual_seed(0), pad=12, jitter=0, scale=0.0, rotate=0.0)
    assert torch.allclose(same, x, atol=1e-5)
    moved = random_transform(x, torch.Generator().manual_seed(0))
    assert moved.shape == x.shape and not torch.allclose(moved, x, atol=1e-2)


# --- stage A -------------------------------------------------------------------------------------------
def _blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """15 feature vectors in 3 tight blobs (C = 8) and 15 matching 'images' (constant colours)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[5.0, 0, 0, 0, 1, 0, 0, 0], [0, 5.0, 0, 0, 0, 1, 0, 0], [0, 0, 5.0, 0, 0, 0, 1, 0]])
    feats = centres.repeat_interleave(5, 0) + 0.1 * torch.randn(15, 8, generator=g)
    images = torch.linspace(0, 1, 15)[:, None, None, None].expand(15, 3, 4, 4).clone()
    return feats, images


@pytest.mark.parametrize("embedding", ["pca", "tsne"])
def test_facets_nearest_members_weights_and_channels(embedding):
    feats, images = _blobs()
    f = find_facets(feats, images, clusters=3, target_channels=2, members=4, embedding=embedding, seed=0)
    blob = np.arange(15) // 5
    for k in range(3):
        own = blob[f.members[k]]
        assert (own == own[0]).all() and (blob[f.labels == k] == own[0]).all()   # members from its own blob
        assert (np.diff(f.distances[k, f.members[k]]) >= 0).all()                 # nearest first
        assert f.weights[k].sum() == pytest.approx(1.0)
        w = torch.from_numpy(f.weights[k]).float()
        assert torch.allclose(f.targets[k], (w[:, None] * feats[f.members[k]]).sum(0), atol=1e-5)
        assert torch.allclose(f.images[k], (w[:, None, None, None] * images[f.members[k]]).sum(0), atol=1e-6)
        assert set(f.channel_lists()[k]) == {int(own[0]), int(own[0]) + 4}        # the blob's two big channels
    again = find_facets(feats, images, clusters=3, target_channels=2, members=4, embedding=embedding, seed=0)
    assert np.array_equal(again.labels, f.labels) and np.array_equal(again.embedding, f.embedding)
    # the original: the farthest images (from the other blobs)
    far = find_facets(feats, images, 3, 2, 4, embedding, seed=0, farthest=True)
    for k in range(3):
        assert not (blob[far.members[k]] == blob[f.members[k][0]]).any()


def test_facet_errors_and_ties():
    feats, images = _blobs()
    with pytest.raises(ConfigError, match="clusters must be an integer in 1..15"):
        find_facets(feats, images, 16, 2)
    with pytest.raises(ConfigError, match="target_channels must be an integer in 1..8"):
        find_facets(feats, images, 2, 9)
    targets = torch.tensor([[3.0, 2.0, 2.0, 1.0]])
    assert top_channels(targets, 2).sum() == 2
    assert top_channels(targets, 2, ties=True).tolist() == [[True, True, True, False]]   # the tie adds a channel
    w = inverse_distance_weights(np.array([[0.0, 1.0, 2.0]]))
    assert w[0, 0] == pytest.approx(1.0) and w.sum() == pytest.approx(1.0)


# --- loss terms ---------------------------------------------------------------------------------------
def test_broadcast_bug_factor():
    """The original adds its scalar L1 and distance terms to every entry of a (B, K) tensor, B = K:
    L_orig = Σ_k A_k + K²·P + K²·mean_{k,c} NLL = Σ_k A_k + K²·P + K·D, with P = Σ_k λ‖z_k‖₁ and
    D = Σ_k mean_c NLL_k (the per-cluster loss). So the L1 term weighs K² = B·K and the distance term
    K times more than in the per-cluster loss."""
    torch.manual_seed(0)
    for k in (1, 3, 10):
        feats = torch.rand(k, 16) * 3
        targets = torch.rand(k, 16) * 3
        channels = top_channels(targets, 4)
        weights = targets * channels
        robust = AdaptiveRobustLoss((k, 16))
        pen = torch.rand(k, 5, 4, 4)
        fixed = loss_terms(feats, pen, targets, weights, channels, robust, 1e-2)
        orig = loss_terms(feats, pen, targets, weights, channels, robust, 1e-2, broadcast=True)
        p, d = fixed.penalty.sum(), fixed.distance.sum()
        assert torch.allclose(orig.total - fixed.total, (k * k - 1) * p + (k - 1) * d, rtol=1e-5, atol=1e-4)
        assert torch.allclose(fixed.total, fixed.activation.sum() + p + d)


def test_mixed_channel_weights_of_the_original():
    class F:
        targets = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
        channels = torch.tensor([[True, True, False], [False, True, True]])
    fixed, mixed = activation_weights(F), activation_weights(F, mixed=True)
    assert fixed.tolist() == [[1, 2, 0], [0, 5, 6]]
    assert mixed.tolist() == [[1, 4, 3], [4, 10, 6]]   # every cluster's sets, channel 1 counted twice
