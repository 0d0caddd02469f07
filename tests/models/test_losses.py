"""zerosum.losses against hand-computed values; saturation; the WGAN-GP penalty's closed form;
weight clipping; feature matching; the MMD losses against evals.mmd and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evals import mmd
from zerosum.losses import (
    LOSS_NAMES,
    RELATIVISTIC_LOSSES,
    clip_weights_,
    d_loss,
    feature_matching_loss,
    g_loss,
    gradient_penalty,
    mmd2_loss,
    mmd_gan_critic_loss,
)

REAL = [1.0, -0.5, 2.0]
FAKE = [-1.0, 0.5, 0.0]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


# Expected values from the definitions, written with math.* on plain floats.
BCE_D = _mean([-math.log(_sigmoid(r)) for r in REAL]) + _mean(
    [-math.log(1 - _sigmoid(f)) for f in FAKE]
)
EXPECTED_D = {
    "minimax": BCE_D,
    "nonsaturating": BCE_D,
    "hinge": _mean([max(0.0, 1 - r) for r in REAL]) + _mean([max(0.0, 1 + f) for f in FAKE]),
    "wgan-gp": _mean(FAKE) - _mean(REAL),
    "lsgan": 0.5 * _mean([(r - 1) ** 2 for r in REAL]) + 0.5 * _mean([f**2 for f in FAKE]),
    "wgan": _mean(FAKE) - _mean(REAL),
    # Real i paired with fake i: -log sigmoid(r_i - f_i).
    "rpgan": _mean([-math.log(_sigmoid(r - f)) for r, f in zip(REAL, FAKE)]),
}
EXPECTED_G = {
    "minimax": _mean([math.log(1 - _sigmoid(f)) for f in FAKE]),
    "nonsaturating": _mean([-math.log(_sigmoid(f)) for f in FAKE]),
    "hinge": -_mean(FAKE),
    "wgan-gp": -_mean(FAKE),
    "lsgan": 0.5 * _mean([(f - 1) ** 2 for f in FAKE]),
    "wgan": -_mean(FAKE),
    "rpgan": _mean([-math.log(_sigmoid(f - r)) for r, f in zip(REAL, FAKE)]),
}


def test_hand_values_cover_every_loss():
    assert set(EXPECTED_D) == set(EXPECTED_G) == set(LOSS_NAMES)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_d_loss_matches_hand_computed_value(name):
    got = d_loss(name, torch.tensor(REAL), torch.tensor(FAKE))
    assert got.shape == ()
    # float32 from exact float32 logits: softplus (exp, log1p: ~1 ulp each), 3-term means and a sum of
    # positive O(1) terms, no cancellation: <= ~8 half-ulps = 5e-7 relative to the float64 value.
    assert got.item() == pytest.approx(EXPECTED_D[name], rel=1e-6)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_g_loss_matches_hand_computed_value(name):
    # real_logits goes to every loss: the non-relativistic ones ignore it (checked below).
    got = g_loss(name, torch.tensor(FAKE), real_logits=torch.tensor(REAL))
    assert got.shape == ()
    if name not in RELATIVISTIC_LOSSES:
        assert torch.equal(got, g_loss(name, torch.tensor(FAKE)))
    # float32, as for D's losses: a few roundings of O(1) terms, <= 5e-7 relative.
    assert got.item() == pytest.approx(EXPECTED_G[name], rel=1e-6)


def test_bce_losses_are_finite_for_extreme_logits():
    big = torch.tensor([-200.0, 200.0])
    assert torch.isfinite(d_loss("minimax", big, big))
    assert torch.isfinite(g_loss("minimax", big)) and torch.isfinite(g_loss("nonsaturating", big))


def test_bf16_logits_give_float32_loss():
    got = d_loss("nonsaturating", torch.tensor(REAL).bfloat16(), torch.tensor(FAKE).bfloat16())
    assert got.dtype == torch.float32


def _grad_of_g_loss(name: str, logit: float) -> float:
    f = torch.tensor([logit], requires_grad=True)
    g_loss(name, f).backward()
    return f.grad.item()


def test_minimax_saturates_where_nonsaturating_does_not():
    # At the equilibrium D = 1/2 (logit 0) both G losses pull with the same gradient, -1/2.
    # float32: one exp and one division (exact at 0, in fact); 1e-6 is a few float32 ulps.
    assert _grad_of_g_loss("minimax", 0.0) == pytest.approx(-0.5, rel=1e-6)
    assert _grad_of_g_loss("nonsaturating", 0.0) == pytest.approx(-0.5, rel=1e-6)
    # Both always push the fake logit up (same direction, so the same fixed point) ...
    for logit in (-5.0, -1.0, 1.0, 5.0):
        assert _grad_of_g_loss("minimax", logit) < 0
        assert _grad_of_g_loss("nonsaturating", logit) < 0
    # ... but when D confidently rejects fakes, sigmoid(f) -> 0, the saturating one vanishes:
    # d/df log(1 - sigmoid(f)) = -sigmoid(f), d/df -log sigmoid(f) = -(1 - sigmoid(f)).
    # float32: exp(-20) (~1 ulp) over 1 + exp(-20), which rounds to 1: a few ulps, ~3e-7 relative.
    assert _grad_of_g_loss("minimax", -20.0) == pytest.approx(-_sigmoid(-20.0), rel=1e-6)
    assert abs(_grad_of_g_loss("minimax", -20.0)) < 1e-8
    # float32: the truth is -1 + 2.1e-9 and float32 resolves 6e-8 just below 1: two ulps of 1.
    assert _grad_of_g_loss("nonsaturating", -20.0) == pytest.approx(-1.0, abs=2.5e-7)


@pytest.mark.parametrize("bad", [lambda: d_loss("wasserstein", torch.zeros(2), torch.zeros(2)),
                                 lambda: g_loss("bce", torch.zeros(2))])
def test_unknown_loss_name_raises_listing_names(bad):
    with pytest.raises(ValueError, match="minimax, nonsaturating, hinge, wgan-gp, lsgan"):
        bad()


def _linear_critic(w: torch.Tensor):
    return lambda x: x.flatten(1) @ w.flatten()


def test_gradient_penalty_is_zero_for_unit_norm_linear_critic():
    w = torch.randn(1, 4, 4)
    w = w / w.norm()
    real, fake = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    gp = gradient_penalty(_linear_critic(w), real, fake)
    # float32: the gradient is w, of norm 1 within ~35 half-ulps (normalise, then 16 squares summed), so
    # weight * (norm - 1)^2 <= 10 * (35 * 6e-8)^2 = 4.4e-11 (plus the 1e-12 under the sqrt).
    assert gp.item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("scale,weight", [(3.0, 10.0), (0.25, 1.0), (0.0, 10.0)])
def test_gradient_penalty_matches_closed_form_for_linear_critic(scale, weight):
    w = torch.randn(6, generator=torch.Generator().manual_seed(0))
    w = scale * w / w.norm()
    real, fake = torch.randn(5, 6), torch.randn(5, 6)
    gen = torch.Generator().manual_seed(1)
    gp = gradient_penalty(_linear_critic(w), real, fake, weight=weight, generator=gen)
    # float32: the norm is scale within ~14 half-ulps (8e-7 relative); (norm - 1)^2 amplifies that by
    # 2 scale / |scale - 1| <= 3, ~2.5e-6; scale 0 gives sqrt(1e-12) = 1e-6, 2e-6 off by design.
    assert gp.item() == pytest.approx(weight * (scale - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_trains_the_critic_and_not_the_generator():
    w = torch.full((3,), 2.0, requires_grad=True)
    fake = torch.randn(4, 3, requires_grad=True)
    gp = gradient_penalty(lambda x: x @ w, torch.randn(4, 3), fake, weight=1.0)
    gp.backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||: the graph through the gradient is kept.
    norm = math.sqrt(12.0)
    expected = 2 * (norm - 1) * 2.0 / norm
    # float32, ~10 operations on O(1) values: <= ~6e-7 relative; the float32 defaults (rtol 1.3e-6,
    # atol 1e-5) fit.
    torch.testing.assert_close(w.grad, torch.full((3,), expected))
    assert fake.grad is None


def test_gradient_penalty_interpolates_per_sample_with_seeded_eps():
    seen: list[torch.Tensor] = []

    def critic(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach().clone())
        return x.sum(dim=1)

    real, fake = torch.ones(64, 2), torch.zeros(64, 2)
    gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    eps = seen[0][:, 0]
    # One eps per sample, shared across features; exact: eps * 1 + (1 - eps) * 0 = eps in any column.
    torch.testing.assert_close(seen[0][:, 1], eps, rtol=0, atol=0)
    assert 0 <= eps.min() and eps.max() <= 1 and eps.std() > 0.1
    gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    # Exact: the same seed draws the same eps, and the same arithmetic follows.
    torch.testing.assert_close(seen[1], seen[0], rtol=0, atol=0)


# --- rpgan, wgan -----------------------------------------------------------------------


def test_rpgan_g_loss_is_d_loss_with_roles_swapped_and_log2_at_a_tie():
    r, f = torch.tensor(REAL), torch.tensor(FAKE)
    # Exact: the same float32 ops on the same values.
    assert torch.equal(g_loss("rpgan", fake_logits=r, real_logits=f), d_loss("rpgan", r, f))
    # r_i = f_i: softplus(0) = log 2 for both players; float32 log2 is within half an ulp (4e-8).
    assert d_loss("rpgan", r, r).item() == pytest.approx(math.log(2), rel=1e-7)
    assert g_loss("rpgan", r, real_logits=r).item() == pytest.approx(math.log(2), rel=1e-7)


def test_rpgan_needs_paired_real_logits():
    with pytest.raises(ValueError, match="needs real_logits"):
        g_loss("rpgan", torch.zeros(3))
    with pytest.raises(ValueError, match="same shape"):
        d_loss("rpgan", torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="same shape"):
        g_loss("rpgan", torch.zeros(3), real_logits=torch.zeros(4))


def test_rpgan_g_gradient_reaches_fakes_only_through_f():
    f = torch.tensor([0.0, 1.0], requires_grad=True)
    r = torch.tensor([1.0, 1.0])
    g_loss("rpgan", f, real_logits=r).backward()
    # d/df_i mean softplus(r - f) = -sigmoid(r_i - f_i) / N; float32 sigmoid and a halving:
    # a couple of ulps, inside assert_close's float32 rtol 1.3e-6.
    expected = torch.tensor([-_sigmoid(1.0) / 2, -0.5 / 2])
    torch.testing.assert_close(f.grad, expected)


def test_clip_weights_clamps_every_parameter_in_place():
    layer = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    with torch.no_grad():
        for i, p in enumerate(layer.parameters()):
            p.copy_(torch.linspace(-0.5, 0.5, p.numel()).view_as(p) * (i + 1))
    before = [p.detach().clone() for p in layer.parameters()]
    ids = [id(p) for p in layer.parameters()]
    assert clip_weights_(layer, 0.1) is None
    for old, p in zip(before, layer.parameters()):
        assert torch.equal(p.detach(), old.clamp(-0.1, 0.1))  # exact: clamping only selects values
    assert [id(p) for p in layer.parameters()] == ids
    assert all(p.requires_grad for p in layer.parameters())
    with pytest.raises(ValueError, match="clip must be > 0"):
        clip_weights_(layer, 0.0)


# --- feature matching ---------------------------------------------------------------------


def test_feature_matching_loss_by_hand():
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)  # mean (2, 3)
    fake = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0]], dtype=torch.float64,
                        requires_grad=True)  # mean (1, 0)
    loss = feature_matching_loss(real, fake)
    assert loss.dtype == torch.float64
    # (2 - 1)^2 + (3 - 0)^2 = 10; the means are sums of small integers divided by 2 and 3,
    # a few float64 roundings (1.1e-16 each) at most.
    assert loss.item() == pytest.approx(10.0, rel=1e-15)
    loss.backward()
    # d/dfake_j = -2 (mean_r - mean_f) / M, the same for every fake row; float64, ~3 roundings.
    expected = (-2.0 / 3.0) * torch.tensor([[1.0, 3.0]] * 3, dtype=torch.float64)
    torch.testing.assert_close(fake.grad, expected, rtol=1e-15, atol=0)


def test_feature_matching_loss_checks_shapes_and_upcasts():
    assert feature_matching_loss(torch.ones(2, 3).bfloat16(), torch.zeros(5, 3)).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(N, F\) and \(M, F\)"):
        feature_matching_loss(torch.ones(2, 3), torch.ones(2, 4))


# --- MMD: GMMN loss and MMD-GAN critic -------------------------------------------------------


def _pair(n: int = 12, m: int = 9, dim: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    fake = torch.randn(n, dim, generator=gen, dtype=torch.float64) + 0.7
    real = torch.randn(m, dim, generator=gen, dtype=torch.float64)
    return fake, real


def test_mmd2_loss_is_evals_mmd2_unbiased():
    fake, real = _pair()
    got = mmd2_loss(fake, real)
    assert got.dtype == torch.float64 and got.shape == ()
    # One implementation, the same float64 operations: equal up to summation order at most;
    # 1e-10 relative is the bound the GMMN loss promises against eval/mmd2.
    assert got.item() == pytest.approx(mmd.mmd2_unbiased(fake, real), rel=1e-10)
    # Symmetric: the pooled median and the U-statistic do not see the order; the swapped sums
    # round differently, by a few ulps of the O(1) kernel means (1e-15) against a ~0.3 value.
    assert mmd2_loss(real, fake).item() == pytest.approx(got.item(), rel=1e-10)


def test_mmd2_loss_flattens_images_and_keeps_float32():
    gen = torch.Generator().manual_seed(1)
    fake, real = torch.randn(6, 1, 4, 4, generator=gen), torch.randn(5, 1, 4, 4, generator=gen)
    got = mmd2_loss(fake, real)
    assert got.dtype == torch.float32
    expected = mmd.mmd2_unbiased(fake.flatten(1), real.flatten(1))
    # The same float64 value, rounded to float32 on one side: half an ulp, 6e-8 relative.
    assert got.item() == pytest.approx(expected, rel=1e-7)


def test_mmd2_loss_gradient_is_finite_nonzero_and_a_step_lowers_it():
    fake, real = _pair(n=32, m=32, dim=4, seed=2)
    fake.requires_grad_(True)
    loss = mmd2_loss(fake, real)
    loss.backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = fake - 0.5 * fake.grad / fake.grad.norm()
    assert mmd2_loss(stepped, real).item() < loss.item()


def test_mmd2_loss_bandwidth_is_a_constant_for_autograd():
    """At a fake outside the median pair, a small move leaves the median where it is: the
    analytic gradient (bandwidth detached) must then equal finite differences of evals' MMD."""
    fake, real = _pair()
    z = torch.cat([fake, real])
    dist = mmd._joint_sq_distances(z)
    upper = dist[torch.triu(torch.ones_like(dist, dtype=torch.bool), diagonal=1)]
    median = upper.sort().values[(upper.numel() - 1) // 2]
    in_pair = set(torch.nonzero(dist == median).flatten().tolist())
    row = next(k for k in range(len(fake)) if k not in in_pair)

    x = fake.clone().requires_grad_(True)
    mmd2_loss(x, real).backward()
    h = 1e-6
    for col in range(fake.shape[1]):
        up, down = fake.clone(), fake.clone()
        up[row, col] += h
        down[row, col] -= h
        numeric = (mmd.mmd2_unbiased(up, real) - mmd.mmd2_unbiased(down, real)) / (2 * h)
        # Central differences: truncation ~h^2 |f'''| ~ 1e-12; rounding ~1e-16 / h = 1e-10.
        assert x.grad[row, col].item() == pytest.approx(numeric, rel=1e-6, abs=1e-8)


def _numpy_mixture_kernel(z: np.ndarray) -> np.ndarray:
    """evals' kernel written out: lower median of the pooled squared distances, 5 Gaussians."""
    sq = ((z[:, None] - z[None]) ** 2).sum(-1)
    values = np.sort(sq[np.triu_indices(len(z), k=1)])
    median = values[(values.size - 1) // 2]
    return np.mean([np.exp(-sq / (f * median)) for f in mmd.GAUSSIAN_FACTORS], axis=0)


def test_mmd_gan_repulsive_critic_loss_by_hand():
    real = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    fake = np.array([[0.5, 0.5], [3.0, 1.0]])
    k = _numpy_mixture_kernel(np.concatenate([real, fake]))
    k_rr = (k[:3, :3].sum() - np.trace(k[:3, :3])) / 6
    k_ff = (k[3:, 3:].sum() - np.trace(k[3:, 3:])) / 2
    k_rf = k[:3, 3:].mean()
    got = mmd_gan_critic_loss(torch.from_numpy(real), torch.from_numpy(fake))
    # Default lambda = 0: the repulsive loss k_rr - k_ff. float64 exp (evals squares one exp,
    # numpy takes five) and sums of O(1) terms: a few ulps against a value of ~0.3.
    assert got.item() == pytest.approx(k_rr - k_ff, rel=1e-12)
    lam = 0.5
    got = mmd_gan_critic_loss(torch.from_numpy(real), torch.from_numpy(fake), repulsive_weight=lam)
    assert got.item() == pytest.approx(lam * k_rf - (lam - 1) * k_rr - k_ff, rel=1e-12)


def test_mmd_gan_critic_loss_at_lambda_2_is_minus_mmd2():
    fake, real = _pair(seed=3)
    attractive = mmd_gan_critic_loss(real, fake, repulsive_weight=2.0)
    # 2 k_rf - k_rr - k_ff against -(k_rr + k_ff - 2 k_rf): the same three float64 means,
    # combined in another order: a few ulps of O(1) terms.
    assert attractive.item() == pytest.approx(-mmd2_loss(fake, real).item(), rel=1e-12, abs=1e-15)


def _mean_pairwise_distance(x: torch.Tensor) -> float:
    return float(torch.pdist(x).mean())


def test_repulsive_loss_spreads_real_features_and_gathers_fake_ones():
    fake, real = _pair(n=16, m=16, dim=2, seed=4)
    real.requires_grad_(True)
    fake.requires_grad_(True)
    mmd_gan_critic_loss(real, fake).backward()
    with torch.no_grad():
        real_after = real - 0.05 * real.grad / real.grad.norm()
        fake_after = fake - 0.05 * fake.grad / fake.grad.norm()
    assert _mean_pairwise_distance(real_after) > _mean_pairwise_distance(real.detach())
    assert _mean_pairwise_distance(fake_after) < _mean_pairwise_distance(fake.detach())


def test_cycle_loss_is_the_hand_computed_l1_of_both_round_trips():
    from zerosum.losses import cycle_consistency_loss, l1_loss

    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])          # (1, 1, 2, 2)
    x_back = torch.tensor([[[[0.5, 1.0], [1.0, 3.0]]]])     # |diff| = 0.5, 0, 1, 0 -> mean 0.375
    y = torch.zeros(2, 1, 1, 2)
    y_back = torch.tensor([[[[1.0, -1.0]]], [[[0.0, 2.0]]]])  # |diff| = 1, 1, 0, 2 -> mean 1.0
    assert l1_loss(x_back, x).item() == 0.375
    # Sums of exact binary fractions: no rounding at all.
    assert cycle_consistency_loss(x, x_back, y, y_back).item() == 0.375 + 1.0
