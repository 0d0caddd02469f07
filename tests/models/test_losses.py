"""zerosum.losses against hand-computed values; saturation; the WGAN-GP penalty's closed form."""

from __future__ import annotations

import math

import pytest
import torch

from zerosum.losses import LOSS_NAMES, d_loss, g_loss, gradient_penalty

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
}
EXPECTED_G = {
    "minimax": _mean([math.log(1 - _sigmoid(f)) for f in FAKE]),
    "nonsaturating": _mean([-math.log(_sigmoid(f)) for f in FAKE]),
    "hinge": -_mean(FAKE),
    "wgan-gp": -_mean(FAKE),
    "lsgan": 0.5 * _mean([(f - 1) ** 2 for f in FAKE]),
}


def test_hand_values_cover_every_loss():
    assert set(EXPECTED_D) == set(EXPECTED_G) == set(LOSS_NAMES)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_d_loss_matches_hand_computed_value(name):
    got = d_loss(name, torch.tensor(REAL), torch.tensor(FAKE))
    assert got.shape == ()
    assert got.item() == pytest.approx(EXPECTED_D[name], rel=1e-6)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_g_loss_matches_hand_computed_value(name):
    got = g_loss(name, torch.tensor(FAKE))
    assert got.shape == ()
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
    assert _grad_of_g_loss("minimax", 0.0) == pytest.approx(-0.5)
    assert _grad_of_g_loss("nonsaturating", 0.0) == pytest.approx(-0.5)
    # Both always push the fake logit up (same direction, so the same fixed point) ...
    for logit in (-5.0, -1.0, 1.0, 5.0):
        assert _grad_of_g_loss("minimax", logit) < 0
        assert _grad_of_g_loss("nonsaturating", logit) < 0
    # ... but when D confidently rejects fakes, sigmoid(f) -> 0, the saturating one vanishes:
    # d/df log(1 - sigmoid(f)) = -sigmoid(f), d/df -log sigmoid(f) = -(1 - sigmoid(f)).
    assert _grad_of_g_loss("minimax", -20.0) == pytest.approx(-_sigmoid(-20.0), rel=1e-4)
    assert abs(_grad_of_g_loss("minimax", -20.0)) < 1e-8
    assert _grad_of_g_loss("nonsaturating", -20.0) == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize("bad", [lambda: d_loss("wgan", torch.zeros(2), torch.zeros(2)),
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
    assert gp.item() == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("scale,weight", [(3.0, 10.0), (0.25, 1.0), (0.0, 10.0)])
def test_gradient_penalty_matches_closed_form_for_linear_critic(scale, weight):
    w = torch.randn(6, generator=torch.Generator().manual_seed(0))
    w = scale * w / w.norm()
    real, fake = torch.randn(5, 6), torch.randn(5, 6)
    gen = torch.Generator().manual_seed(1)
    gp = gradient_penalty(_linear_critic(w), real, fake, weight=weight, generator=gen)
    assert gp.item() == pytest.approx(weight * (scale - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_trains_the_critic_and_not_the_generator():
    w = torch.full((3,), 2.0, requires_grad=True)
    fake = torch.randn(4, 3, requires_grad=True)
    gp = gradient_penalty(lambda x: x @ w, torch.randn(4, 3), fake, weight=1.0)
    gp.backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||: the graph through the gradient is kept.
    norm = math.sqrt(12.0)
    expected = 2 * (norm - 1) * 2.0 / norm
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
    torch.testing.assert_close(seen[0][:, 1], eps)  # one eps per sample, shared across features
    assert 0 <= eps.min() and eps.max() <= 1 and eps.std() > 0.1
    gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(seen[1], seen[0])
