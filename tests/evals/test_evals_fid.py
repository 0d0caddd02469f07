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
    # float64: 2 Tr S - 2 Tr (S S)^(1/2) cancels terms of 2 Tr S = 65; eigh/sqrtm of a 32-dim S
    # with cond 21 leave ~D * cond * eps64 = 1.5e-13 of that, ~1e-11; 1e-9 leaves 100x.
    assert PATHS[path](mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("path", PATHS)
def test_equal_covariances_give_squared_mean_distance(path):
    rng = np.random.default_rng(2)
    mu1, mu2, cov = rng.standard_normal(32), rng.standard_normal(32), random_spd(rng, 32)
    expected = float(((mu1 - mu2) ** 2).sum())
    # float64, as above (D * cond * eps64 ~ 1.5e-13 of 2 Tr S, which is ~FD here); 1e-10 leaves room.
    assert PATHS[path](mu1, cov, mu2, cov) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("path", PATHS)
def test_diagonal_covariances_closed_form(path):
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.standard_normal(40), rng.standard_normal(40)
    a, b = rng.uniform(0.1, 3.0, 40), rng.uniform(0.1, 3.0, 40)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    # float64, diagonal: Schur/eigh of a diagonal matrix are exact, so only the square roots and
    # 40-term sums round, ~40 eps64 of Tr a + Tr b (~1.2 FD): ~1e-14 relative.
    assert PATHS[path](mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("path", PATHS)
def test_symmetric_and_non_negative(path):
    rng = np.random.default_rng(4)
    for _ in range(5):
        mu1, mu2 = rng.standard_normal(24), rng.standard_normal(24) * 0.01
        s1, s2 = random_spd(rng, 24), random_spd(rng, 24, scale=1.1)
        forward, backward = PATHS[path](mu1, s1, mu2, s2), PATHS[path](mu2, s2, mu1, s1)
        # float64: sqrtm of S1 S2 vs S2 S1 (24-dim, cond <= 41 each): ~D * cond * eps64 = 2e-13 of
        # Tr S1 + Tr S2 (<= 1.9 FD); 1e-10 leaves room for a non-normal product.
        assert forward >= 0 and forward == pytest.approx(backward, rel=1e-10)


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
    # float64. Full rank (cond ~46, Tr S1 + Tr S2 = 36 FD): ~D * cond * eps64 * 36 = 2.4e-11.
    # Rank-deficient: each of the 25-55 zero eigenvalues of S1 S2 comes out as ~eps * |S1 S2| and
    # its square root as ~1e-7, so Tr sqrt loses ~55 * 1.3e-7 = 7e-6 of FD = 53: ~1.4e-7 relative.
    rel = 1e-8 if case == "full-rank" else 1e-6
    for value in values:
        assert value == pytest.approx(expected_tf, rel=rel)
        assert value == pytest.approx(expected_pf, rel=rel)


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
        # float64: the collapsed covariance is exactly 0, so sqrt(S_ref 0) = 0 exactly; what is
        # left are two 16-term sums, ~16 eps64 relative.
        assert value == pytest.approx(expected, rel=1e-12)


def test_reference_with_its_own_stats_is_zero():
    _, real = feature_pair(np.random.default_rng(8), 10, 400, 32)
    # float64: cancels 2 Tr S = 36 (32-dim, cond 42) to ~D * cond * eps64 * 36 = 1e-11; 1e-9 leaves 100x.
    assert stats_to_fid(real, FIDReference.from_stats(real)) == pytest.approx(0.0, abs=1e-9)


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
