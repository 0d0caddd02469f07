"""FeatureStats: sharded merges, moments against numpy, flat tensors and files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evals.stats import FeatureStats, features_to_stats


@pytest.fixture
def features() -> np.ndarray:
    rng = np.random.default_rng(0)
    # A non-zero mean and correlated columns make the cancellation in cov() visible if it is wrong.
    mixing = rng.standard_normal((16, 16))
    return rng.standard_normal((301, 16)) @ mixing + 3.0


def test_mean_and_cov_equal_numpy(features):
    stats = FeatureStats.from_features(features)
    assert stats.count == 301 and stats.dim == 16
    # float64: means ~3 from 301-term sums, <= 301 eps64 * mean|x| ~ 2e-13 apart even summed sequentially.
    np.testing.assert_allclose(stats.mean(), features.mean(axis=0), rtol=1e-12, atol=1e-12)
    # float64: sum(x x^T) - n mean mean^T cancels ~E[x_i x_j] ~ 30 per row: <= 301 eps64 * 30 = 1e-12
    # absolute, against np.cov's centred sums; 1e-10 leaves 100x.
    np.testing.assert_allclose(stats.cov(), np.cov(features, rowvar=False), rtol=1e-10, atol=1e-10)


def test_three_shards_merge_to_single_pass(features):
    whole = FeatureStats.from_features(features)
    shards = [FeatureStats.from_features(part) for part in np.array_split(features, [50, 190])]
    merged = FeatureStats.merge_all(shards)
    pairwise = shards[0].merge(shards[1]).merge(shards[2])
    for candidate in (merged, pairwise):
        assert candidate.count == whole.count
        # float64, the same sums regrouped: the bounds of the test above (2e-13, 1e-12); 1e-10 leaves room.
        np.testing.assert_allclose(candidate.mean(), whole.mean(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(candidate.cov(), whole.cov(), rtol=1e-10, atol=1e-10)


def test_update_in_place_accepts_torch_batches(features):
    stats = FeatureStats.empty(16)
    for batch in torch.from_numpy(features).float().split(64):
        assert stats.update(batch) is stats
    expected = FeatureStats.from_features(torch.from_numpy(features).float())
    assert stats.count == 301
    # float32 values widen exactly and their products are exact in float64; only the float64
    # sums are regrouped by batch: <= 301 eps64 * 30 = 1e-12 on cov.
    np.testing.assert_allclose(stats.cov(), expected.cov(), rtol=1e-10, atol=1e-10)


def test_merge_leaves_inputs_unchanged(features):
    left, right = FeatureStats.from_features(features[:10]), FeatureStats.from_features(features[10:])
    before = left.feature_sum.copy()
    left.merge(right)
    assert left.count == 10 and np.array_equal(left.feature_sum, before)


def test_flat_tensor_sum_is_a_merge(features):
    """What all_reduce(SUM) does across workers: add the flat tensors, then rebuild."""
    shards = [FeatureStats.from_features(part) for part in np.array_split(features, 3)]
    flat = sum(stats.to_tensor() for stats in shards)
    assert flat.dtype == torch.float64 and flat.shape == (1 + 16 + 16 * 16,)
    rebuilt = FeatureStats.from_tensor(flat, dim=16)
    whole = features_to_stats(features)
    assert rebuilt.count == 301
    # float64, the same sums regrouped into 3 shards: <= 1e-12 on cov, as above.
    np.testing.assert_allclose(rebuilt.cov(), whole.cov(), rtol=1e-10, atol=1e-10)


def test_save_and_load_round_trip(features, tmp_path):
    stats = FeatureStats.from_features(features)
    path = stats.save(tmp_path / "sub" / "real.npz")
    loaded = FeatureStats.load(path)
    assert loaded.count == stats.count
    np.testing.assert_array_equal(loaded.outer_sum, stats.outer_sum)
    assert not list(path.parent.glob(".*.tmp"))
    np.savez(tmp_path / "other.npz", values=np.zeros(3))
    with pytest.raises(ValueError, match="not a FeatureStats file"):
        FeatureStats.load(tmp_path / "other.npz")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: FeatureStats.from_features(np.zeros(5)), "2-D"),
        (lambda: FeatureStats.from_features(np.full((3, 2), np.nan)), "finite"),
        (lambda: FeatureStats.empty(0), "dim"),
        (lambda: FeatureStats.empty(3).update(np.zeros((2, 4))), "3 columns"),
        (lambda: FeatureStats.empty(3).merge(FeatureStats.empty(2)), "dim 3"),
        (lambda: FeatureStats.merge_all([]), "at least one"),
        (lambda: FeatureStats.empty(3).mean(), "count >= 1"),
        (lambda: FeatureStats.from_features(np.zeros((1, 3))).cov(), "count >= 2"),
        (lambda: FeatureStats.from_tensor(torch.zeros(5), dim=3), "13 values"),
    ],
)
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
