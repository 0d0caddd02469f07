"""The one-call metric helpers return zerosum's keys and the underlying values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evals.fid import FIDReference
from evals.metrics import class_metrics, feature_metrics, mixture_metrics
from evals.mmd import kid, mmd_permutation_test
from evals.modes import ring8_centres
from evals.stats import FeatureStats


def test_feature_metrics_match_the_building_blocks():
    rng = np.random.default_rng(0)
    fake, real = rng.standard_normal((120, 8)) + 0.2, rng.standard_normal((150, 8))
    reference = FIDReference.from_stats(FeatureStats.from_features(real))
    out = feature_metrics(fake, real, reference=reference, num_permutations=100, kid_subsets=5,
                          kid_subset_size=1000, seed=3)
    assert set(out) == {"eval/fid", "eval/kid", "eval/kid_std", "eval/mmd2", "eval/mmd_pvalue"}
    # The same float64 calls with the same arguments: bitwise equal unless a threaded BLAS reorders
    # a reduction from run to run. Then the most cancelling value, kid_std = 0.024 (kernel values
    # <= 48, ~260-term reductions, weights 4), moves <= 4 * 260 * 1.1e-16 * 48 = 5.5e-12, 2.3e-10
    # relative; FID (0.6, Tr S = 16, 8-dim) and MMD^2 (7e-3, k <= 1) move less. pytest.approx's
    # default rel=1e-6 would hide a float32 detour (~1e-7), so 1e-9.
    assert out["eval/fid"] == pytest.approx(reference.fid(FeatureStats.from_features(fake)), rel=1e-9)
    expected_kid = kid(fake, real, num_subsets=5, subset_size=120, seed=3)
    assert (out["eval/kid"], out["eval/kid_std"]) == pytest.approx(tuple(expected_kid), rel=1e-9)
    expected_test = mmd_permutation_test(fake, real, num_permutations=100, seed=3)
    assert (out["eval/mmd2"], out["eval/mmd_pvalue"]) == pytest.approx(tuple(expected_test), rel=1e-9)
    assert all(isinstance(v, float) for v in out.values())


def test_fid_only_from_merged_stats():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((100, 4)), rng.standard_normal((90, 4))
    reference = FIDReference.from_stats(FeatureStats.from_features(real))
    out = feature_metrics(metrics=("fid",), reference=reference, fake_stats=FeatureStats.from_features(fake))
    assert list(out) == ["eval/fid"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(metrics=("fid", "is")), "metrics must be among"),
        (dict(metrics=("mmd",)), "required"),
        (dict(fake=np.zeros((3, 2)), real=np.zeros((3, 2)), metrics=("fid",)), "reference"),
    ],
)
def test_feature_metrics_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        feature_metrics(**kwargs)


def test_mixture_and_class_metrics():
    # 3 HQ points at 3 of 8 modes: KL of (1/3, 1/3, 1/3, 0, ...) against uniform is log(8/3).
    found = mixture_metrics(ring8_centres()[:3], "ring8")
    assert found == {"eval/modes": 3.0, "eval/hq_fraction": 1.0, "eval/mode_kl": pytest.approx(math.log(8 / 3), rel=1e-12)}
    out = class_metrics(np.eye(10)[[1, 1, 2]])
    assert out["eval/classes_covered"] == 2.0 and out["eval/class_kl"] > 0
