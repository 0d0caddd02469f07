"""FID: closed forms, both code paths, and agreement with pytorch-fid and torch-fidelity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from evals.fid import FIDReference, RankDeficientWarning, frechet_distance, stats_to_fid
from evals.stats import FeatureStats

# pytorch-fid 0.3.0 passes sqrtm(disp=False), deprecated in SciPy 1.17.
pytestmark = pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")


def fast_fid(mu1, s1, mu2, s2) -> float:
    return FIDReference(mu2, s2).fid(mu1, s1)


PATHS = {"reference": frechet_distance, "fast": fast_fid}


def random_spd(rng, dim: int, scale: float = 1.0) -> np.ndarray:
    a = rng.standard_normal((dim, 2 * dim))
    return scale * a @ a.T / (2 * dim)


@pytest.mark.parametrize("path", PATHS)
def test_identical_statistics_give_zero(path):
    rng = np.random.default_rng(1)
    mu, cov = rng.standard_normal(32), random_spd(rng, 32)
    assert PATHS[path](mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("path", PATHS)
def test_equal_covariances_give_squared_mean_distance(path):
    rng = np.random.default_rng(2)
    mu1, mu2, cov = rng.standard_normal(32), rng.standard_normal(32), random_spd(rng, 32)
    expected = float(((mu1 - mu2) ** 2).sum())
    assert PATHS[path](mu1, cov, mu2, cov) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("path", PATHS)
def test_diagonal_covariances_closed_form(path):
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.standard_normal(40), rng.standard_normal(40)
    a, b = rng.uniform(0.1, 3.0, 40), rng.uniform(0.1, 3.0, 40)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert PATHS[path](mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("path", PATHS)
def test_symmetric_and_non_negative(path):
    rng = np.random.default_rng(4)
    for _ in range(5):
        mu1, mu2 = rng.standard_normal(24), rng.standard_normal(24) * 0.01
        s1, s2 = random_spd(rng, 24), random_spd(rng, 24, scale=1.1)
        forward, backward = PATHS[path](mu1, s1, mu2, s2), PATHS[path](mu2, s2, mu1, s1)
        assert forward >= 0 and forward == pytest.approx(backward, rel=1e-8)


def feature_pair(rng, n_fake: int, n_real: int, dim: int):
    """Inception-like features: non-negative, correlated, with a small shift between sides.

    Returns (fake, real) FeatureStats.
    """
    mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    real = np.maximum(rng.standard_normal((n_real, dim)) @ mixing + 0.5, 0)
    fake = np.maximum(rng.standard_normal((n_fake, dim)) @ mixing * 1.1 + 0.55, 0)
    return FeatureStats.from_features(fake), FeatureStats.from_features(real)


# (fake samples, real samples, dim)
CASES = {"full-rank": (500, 600, 64), "fake-rank-deficient": (40, 600, 64), "both-rank-deficient": (10, 12, 64)}


@pytest.mark.parametrize("case", CASES)
def test_agrees_with_pytorch_fid_and_torch_fidelity(case):
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    n1, n2, dim = CASES[case]
    fake, real = feature_pair(np.random.default_rng(5), n1, n2, dim)
    mu1, s1, mu2, s2 = fake.mean(), fake.cov(), real.mean(), real.cov()
    expected_tf = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)
    expected_tf = expected_tf["frechet_inception_distance"]
    expected_pf = float(calculate_frechet_distance(mu1, s1, mu2, s2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        values = [frechet_distance(mu1, s1, mu2, s2), stats_to_fid(fake, FIDReference.from_stats(real)),
                  stats_to_fid(fake, real)]
    for value in values:
        assert value == pytest.approx(expected_tf, rel=1e-6)
        assert value == pytest.approx(expected_pf, rel=1e-6)


def test_rank_deficient_is_finite_non_negative_and_warns():
    fake, real = feature_pair(np.random.default_rng(6), 20, 2000, 64)
    reference = FIDReference.from_stats(real)
    with pytest.warns(RankDeficientWarning, match="rank-deficient"):
        fast = reference.fid(fake)
    with pytest.warns(RankDeficientWarning, match="rank-deficient"):
        slow = frechet_distance(fake.mean(), fake.cov(), real.mean(), real.cov())
    for value in (fast, slow):
        assert np.isfinite(value) and value >= 0 and isinstance(value, float)


def test_collapsed_generator_is_finite():
    """Every fake identical: covariance 0. FD = |dmu|^2 + Tr(S_ref)."""
    _, real = feature_pair(np.random.default_rng(7), 10, 500, 16)
    collapsed = FeatureStats.from_features(np.ones((100, 16)))
    expected = float(((1 - real.mean()) ** 2).sum() + np.trace(real.cov()))
    for path in ("fast", "reference"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RankDeficientWarning)
            value = (stats_to_fid(collapsed, real) if path == "fast" else
                     frechet_distance(collapsed.mean(), collapsed.cov(), real.mean(), real.cov()))
        assert value == pytest.approx(expected, rel=1e-6)


def test_reference_with_its_own_stats_is_zero():
    _, real = feature_pair(np.random.default_rng(8), 10, 400, 32)
    assert stats_to_fid(real, FIDReference.from_stats(real)) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4)), "same shape"),
        (lambda: frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3)), r"\(D, D\)"),
        (lambda: FIDReference(np.zeros(3), np.eye(3)).fid(np.zeros(4), np.eye(4)), "shape"),
        (lambda: FIDReference(np.zeros(3), np.eye(3)).fid(np.zeros(3)), "cov is required"),
        (lambda: FIDReference(np.full(3, np.nan), np.eye(3)), "finite"),
        (lambda: stats_to_fid(FeatureStats.empty(3), "real"), "ref must be"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
