"""zerosum.latent: InfoGAN code sampling and the mutual-information loss against hand values."""

from __future__ import annotations

import math

import pytest
import torch

from zerosum.latent import LatentCodes, mutual_information_loss


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_sample_shapes_ranges_and_seeding():
    codes = LatentCodes(categorical=10, continuous=2)
    assert codes.dim == 12
    onehot, cont = codes.sample(4096, _gen(0))
    assert onehot.shape == (4096, 10) and cont.shape == (4096, 2)
    assert onehot.dtype == cont.dtype == torch.float32
    assert torch.equal(onehot.sum(dim=1), torch.ones(4096))  # exactly one hot
    assert set(onehot.unique().tolist()) == {0.0, 1.0}
    assert cont.min() >= -1 and cont.max() <= 1
    # Uniform on [-1, 1]: mean 0, variance 1/3; with 8192 draws the std errors are 0.0064 and
    # 0.0033, so 0.03 is more than 4 sigma.
    assert abs(float(cont.mean())) < 0.03 and abs(float(cont.var()) - 1 / 3) < 0.03
    counts = onehot.sum(dim=0)
    assert counts.min() > 300  # 409.6 expected per category, std ~19
    again = codes.sample(4096, _gen(0))
    assert torch.equal(again.onehot, onehot) and torch.equal(again.continuous, cont)
    assert torch.equal(again.index, onehot.argmax(dim=1))
    assert not torch.equal(codes.sample(4096, _gen(1)).continuous, cont)


def test_codes_of_one_kind_only():
    onehot, cont = LatentCodes(0, 3).sample(5, _gen(0))
    assert onehot.shape == (5, 0) and cont.shape == (5, 3)
    onehot, cont = LatentCodes(4, 0).sample(5, _gen(0))
    assert onehot.shape == (5, 4) and cont.shape == (5, 0)
    with pytest.raises(ValueError, match="categorical must be 0"):
        LatentCodes(1, 2)
    with pytest.raises(ValueError, match="continuous must be"):
        LatentCodes(2, -1)


# Two samples, K = 3 categories, C = 2 continuous codes.
LOGITS = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]]
INDEX = [0, 2]
MEAN = [[0.0, 0.5], [-0.5, 1.0]]
LOG_STD = [[0.0, math.log(0.5)], [math.log(2.0), 0.0]]
CODES = [[0.5, 0.0], [0.5, -1.0]]


def _cross_entropy() -> float:
    total = 0.0
    for logits, k in zip(LOGITS, INDEX):
        total += -logits[k] + math.log(sum(math.exp(v) for v in logits))
    return total / len(LOGITS)


def _gaussian_nll(log_std) -> float:
    total = 0.0
    for mus, log_sigmas, cs in zip(MEAN, log_std, CODES):
        for mu, ls, c in zip(mus, log_sigmas, cs):
            total += 0.5 * math.log(2 * math.pi) + ls + 0.5 * ((c - mu) / math.exp(ls)) ** 2
    return total / len(MEAN)


def test_mutual_information_loss_matches_hand_values():
    loss = mutual_information_loss(t(LOGITS), t(MEAN), t(LOG_STD), torch.tensor(INDEX), t(CODES))
    # float64 throughout: a few exp/log roundings on O(1) values, 1e-14 relative is ample.
    assert loss.categorical.item() == pytest.approx(_cross_entropy(), rel=1e-14)
    assert loss.continuous.item() == pytest.approx(_gaussian_nll(LOG_STD), rel=1e-14)
    assert loss.total.item() == pytest.approx(_cross_entropy() + _gaussian_nll(LOG_STD), rel=1e-14)


def test_fixed_std_is_the_authors_fix_std():
    loss = mutual_information_loss(t(LOGITS), t(MEAN), None, torch.tensor(INDEX), t(CODES))
    zeros = [[0.0, 0.0], [0.0, 0.0]]
    assert loss.continuous.item() == pytest.approx(_gaussian_nll(zeros), rel=1e-14)  # std 1: log std 0
    half = mutual_information_loss(t(LOGITS), t(MEAN), None, torch.tensor(INDEX), t(CODES), fixed_std=0.5)
    logs = [[math.log(0.5)] * 2] * 2
    assert half.continuous.item() == pytest.approx(_gaussian_nll(logs), rel=1e-14)


def test_terms_are_separate_and_a_missing_kind_is_zero():
    only_cat = mutual_information_loss(t(LOGITS), None, None, torch.tensor(INDEX), None)
    assert only_cat.continuous.item() == 0.0
    assert only_cat.total.item() == pytest.approx(_cross_entropy(), rel=1e-14)
    only_cont = mutual_information_loss(None, t(MEAN), t(LOG_STD), None, t(CODES))
    assert only_cont.categorical.item() == 0.0
    assert only_cont.total.item() == pytest.approx(_gaussian_nll(LOG_STD), rel=1e-14)
    with pytest.raises(ValueError, match="needs q_logits or q_mean"):
        mutual_information_loss(None, None, None, None, None)
    with pytest.raises(ValueError, match="same shape|of that shape"):
        mutual_information_loss(None, t(MEAN), None, None, t([[0.0], [0.0]]))


def test_gradients_reach_q_and_the_codes_are_targets():
    logits = torch.tensor(LOGITS, requires_grad=True)
    mean = torch.tensor(MEAN, requires_grad=True)
    log_std = torch.tensor(LOG_STD, requires_grad=True)
    loss = mutual_information_loss(logits, mean, log_std, torch.tensor(INDEX), torch.tensor(CODES))
    loss.total.backward()
    # d/dlogits CE = (softmax - onehot) / n; d/dmu NLL = -(c - mu) / sigma^2 / n.
    probs = torch.softmax(torch.tensor(LOGITS), dim=1)
    expected = (probs - torch.nn.functional.one_hot(torch.tensor(INDEX), 3)) / 2
    # float32: softmax and a subtraction, a few ulps; the float32 defaults of assert_close.
    torch.testing.assert_close(logits.grad, expected)
    sigma = torch.tensor(LOG_STD).exp()
    torch.testing.assert_close(mean.grad, -(torch.tensor(CODES) - torch.tensor(MEAN)) / sigma**2 / 2)
    assert torch.isfinite(log_std.grad).all()
