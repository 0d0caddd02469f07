"""MMD: estimator algebra, KID against torch-fidelity, permutation-test level and power."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evals import mmd
from evals_fixtures import single_thread  # noqa: F401  (fixture)


def naive_mmd2(x: np.ndarray, y: np.ndarray, kernel) -> float:
    """The U-statistic written out with explicit double loops over index pairs."""
    n, m = len(x), len(y)
    xx = sum(kernel(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


@pytest.fixture
def small_pair():
    rng = np.random.default_rng(0)
    return rng.standard_normal((12, 3)), rng.standard_normal((9, 3)) + 0.3


def test_cubic_mmd2_matches_the_written_out_estimator(small_pair):
    x, y = small_pair
    expected = naive_mmd2(x, y, lambda a, b: (a @ b / 3 + 1) ** 3)
    # float64, kernel values up to ~52 (mixed sign) and MMD^2 = 2.6: the naive sequential sums of
    # ~132 terms err by <= ~132 eps64 * 52 per mean, ~3e-12 absolute in all, ~1.3e-12 relative.
    assert mmd.mmd2_unbiased(x, y, kernel="cubic") == pytest.approx(expected, rel=1e-11)


def test_gaussian_mmd2_matches_median_heuristic_mixture(small_pair):
    x, y = small_pair
    z = np.concatenate([x, y])
    sq = ((z[:, None] - z[None]) ** 2).sum(-1)
    median = np.median(sq[np.triu_indices(len(z), k=1)])
    # torch.median takes the lower median of an even count; match it.
    median = np.sort(sq[np.triu_indices(len(z), k=1)])[(sq[np.triu_indices(len(z), k=1)].size - 1) // 2]

    def kernel(a, b):
        d = ((a - b) ** 2).sum()
        return np.mean([np.exp(-d / (f * median)) for f in mmd.GAUSSIAN_FACTORS])

    # float64, kernel <= 1, MMD^2 = 0.12: torch's |a|^2 + |b|^2 - 2 a.b distances vs the direct ones,
    # and sums of <= 132 terms, differ by ~1e-13 absolute (~2e-12 relative); 1e-10 leaves room.
    assert mmd.mmd2_unbiased(x, y, kernel="gaussian") == pytest.approx(naive_mmd2(x, y, kernel), rel=1e-10)


def test_permuted_statistics_equal_recomputed_ones(small_pair):
    x, y = small_pair
    matrix = mmd.joint_kernel_matrix(x, y)
    masks = mmd._permutation_masks(21, 12, 10, seed=3)
    batched = mmd._split_statistics(matrix, masks, 12)
    for row, value in zip(masks, batched):
        order = torch.cat([torch.nonzero(row).flatten(), torch.nonzero(1 - row).flatten()])
        # float64, kernel <= 1: sums of <= 441 kernel values (so <= 441), and sum_yy = total - 2 x_rows
        # + sum_xx cancels them: ~42 eps64 * 441 / 72 per estimator term, ~1e-13 in all, worst case.
        assert float(value) == pytest.approx(mmd.mmd2_from_kernel(matrix[order][:, order], 12), abs=1e-12)


def test_permutation_result_reports_observed_mmd2(small_pair):
    x, y = small_pair
    result = mmd.mmd_permutation_test(x, y, kernel="cubic", num_permutations=50, seed=1)
    # Same float64 kernel matrix, different sums: as above with kernel values up to 52 and
    # MMD^2 = 2.6, ~1.6e-12 absolute (6e-13 relative) worst case.
    assert result.mmd2 == pytest.approx(mmd.mmd2_unbiased(x, y, kernel="cubic"), rel=1e-11)
    assert 1 / 51 <= result.pvalue <= 1


KID_CASES = {
    "equal-sizes": dict(n_x=300, n_y=300, dim=32, num_subsets=10, subset_size=100),
    "unequal-sizes": dict(n_x=250, n_y=180, dim=48, num_subsets=7, subset_size=150),
    "fewer-samples-than-dims": dict(n_x=60, n_y=70, dim=128, num_subsets=5, subset_size=50),
    "whole-set-subsets": dict(n_x=80, n_y=80, dim=16, num_subsets=3, subset_size=80),
}


@pytest.mark.parametrize("strategy", ["full", "subsets", "auto"])
@pytest.mark.parametrize("case", KID_CASES)
def test_kid_matches_torch_fidelity(case, strategy):
    from torch_fidelity.metric_kid import kid_features_to_metric

    spec = KID_CASES[case]
    rng = np.random.default_rng(11)
    x = torch.from_numpy(np.maximum(rng.standard_normal((spec["n_x"], spec["dim"])) + 0.3, 0))
    y = torch.from_numpy(np.maximum(rng.standard_normal((spec["n_y"], spec["dim"])) * 1.1 + 0.35, 0))
    expected = kid_features_to_metric(
        x, y, kid_subsets=spec["num_subsets"], kid_subset_size=spec["subset_size"], verbose=False,
        rng_seed=2020, kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
    )
    result = mmd.kid(x, y, num_subsets=spec["num_subsets"], subset_size=spec["subset_size"], seed=2020,
                     strategy=strategy, block_size=64)
    # Both float64. KID (>= 8e-3 here) is a difference of kernel means, kernel values <= ~21, so
    # round-off is absolute: per mean <= (3 * 128 dot-product terms + ~600 summed terms) * 1.1e-16
    # * 21 ~ 2.3e-12, weights 1 + 1 + 2, two implementations: ~2e-11. The std moves by at most
    # as much as the values do (whole-set subsets: a std of pure round-off, ~4e-16 observed).
    assert result.mean == pytest.approx(expected["kernel_inception_distance_mean"], abs=1e-10)
    assert result.std == pytest.approx(expected["kernel_inception_distance_std"], abs=1e-10)


def test_kid_float32_inputs_stay_close_to_float64():
    rng = np.random.default_rng(12)
    x, y = rng.random((200, 64)), rng.random((200, 64)) * 1.05
    exact = mmd.kid(x, y, num_subsets=5, subset_size=100)
    single = mmd.kid(x.astype(np.float32), y.astype(np.float32), num_subsets=5, subset_size=100)
    # KID = 4.3e-3, a difference of kernel means with k <= 3.1: each float32 kernel value is off
    # by <= ~6 eps32 relative (64-term dot product, cubed; measured <= 3.0 eps), and MMD^2 weighs
    # its means 1 + 1 + 2: 4 * 6 * 1.2e-7 * 3.1 = 8.9e-6 absolute, about 2e-3 of the value.
    assert single.mean == pytest.approx(exact.mean, abs=1e-5)


def test_permutation_test_holds_its_level(single_thread):
    """Under H0, 200 tests at alpha 0.05 reject at a rate within 0.05 +- 0.035."""
    generator = torch.Generator().manual_seed(2024)
    rejections = 0
    for rep in range(200):
        x = torch.randn(30, 4, generator=generator, dtype=torch.float64)
        y = torch.randn(30, 4, generator=generator, dtype=torch.float64)
        rejections += mmd.mmd_permutation_test(x, y, num_permutations=200, seed=rep).pvalue <= 0.05
    assert abs(rejections / 200 - 0.05) <= 0.035


@pytest.mark.parametrize("kernel", mmd.KERNELS)
def test_permutation_test_has_power(kernel, single_thread):
    """n = m = 200 in 16 dims, every coordinate shifted by 0.5 std: rejected in >= 95% of 40 runs."""
    generator = torch.Generator().manual_seed(7)
    rejections = 0
    for rep in range(40):
        x = torch.randn(200, 16, generator=generator, dtype=torch.float64)
        y = torch.randn(200, 16, generator=generator, dtype=torch.float64) + 0.5
        rejections += mmd.mmd_permutation_test(x, y, kernel=kernel, num_permutations=200, seed=rep).pvalue <= 0.05
    assert rejections / 40 >= 0.95


def test_identical_samples_warn_and_stay_finite():
    x = np.zeros((10, 3))
    with pytest.warns(RuntimeWarning, match="median pairwise distance is 0"):
        value = mmd.mmd2_unbiased(x, x.copy())
    # Exact: every kernel value is exp(0) = 1, so each mean is (k^2 - k) / (k^2 - k) = 1 and 1 + 1 - 2 = 0.
    assert value == 0.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mmd.mmd2_unbiased(np.zeros((5, 2)), np.zeros((5, 3))), "same feature dimension"),
        (lambda: mmd.mmd2_unbiased(np.zeros((1, 2)), np.zeros((5, 2))), "at least 2 rows"),
        (lambda: mmd.mmd2_unbiased(np.zeros(5), np.zeros((5, 2))), "2-D"),
        (lambda: mmd.mmd2_unbiased(np.ones((5, 2)), np.ones((5, 2)), kernel="rbf"), "kernel must be"),
        (lambda: mmd.mmd_permutation_test(np.ones((5, 2)), np.ones((5, 2)), num_permutations=0), "num_permutations"),
        (lambda: mmd.kid(np.ones((5, 2)), np.ones((5, 2)), subset_size=10), "subset_size"),
        (lambda: mmd.kid(np.ones((5, 2)), np.ones((5, 2)), subset_size=3, strategy="fast"), "strategy"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kid_torch_path_equals_numpy_path(dtype):
    """On GPU the KID loop runs on torch tensors; check that path on CPU tensors."""
    rng = np.random.default_rng(13)
    x, y = rng.random((90, 20)).astype(dtype), rng.random((70, 20)).astype(dtype)
    idx_x, idx_y = mmd.kid_subset_indices(90, 70, 4, 50, seed=1)

    def kernel_fn(a, b):
        return mmd._poly_block(a, b, 3, 1 / 20, 1.0)

    # The per-subset MMD^2 (~5e-3) is a difference of kernel means (~2, k <= kernel_max ~3.5), so
    # round-off is absolute, in units of kernel_max, not relative to MMD^2. Each path's kernel
    # value carries <= ~3 eps of the input dtype (20-term dot product, cubed; measured <= 1.6 eps
    # in float32): <= 6 eps between the paths. The float64 sums over <= ~200 terms add <= 200
    # eps64. MMD^2 weighs its three means 1 + 1 + 2 = 4. float32: 1.0e-5 (another machine saw 6.6e-7
    # relative, ~3e-9 absolute); float64: 6e-13. A single misplaced kernel entry moves MMD^2 by ~1e-3.
    z = np.concatenate([x, y])
    kernel_max = float(kernel_fn(z, z).max())
    atol = 4 * kernel_max * (6 * np.finfo(dtype).eps + 200 * np.finfo(np.float64).eps)
    for by in (lambda a, b: mmd._kid_by_masks(a, b, idx_x, idx_y, kernel_fn, 32),
               lambda a, b: mmd._kid_by_subsets(a, b, idx_x, idx_y, kernel_fn)):
        np.testing.assert_allclose(by(torch.from_numpy(x), torch.from_numpy(y)), by(x, y), rtol=0, atol=atol)
