"""Maximum mean discrepancy: unbiased MMD^2, KID and a permutation two-sample test.

All functions take features as torch tensors or numpy arrays, x (n, D) and y (m, D).
Inner products run in the input's float dtype (float32 stays float32, for speed);
kernel values and every sum over them are float64, because the unbiased
estimator is a small difference of large sums.

Kernels (``kernel=``):

- ``"gaussian"``: an equal-weight mixture of Gaussian kernels,
  k(a, b) = mean_f exp(-|a - b|^2 / (f * med)), where med is the median squared
  distance between distinct points of the pooled sample x U y (the median
  heuristic) and f runs over ``GAUSSIAN_FACTORS`` = (0.25, 0.5, 1, 2, 4). The
  pooled median does not change when points are permuted between x and y, so
  the permutation test stays exact.
- ``"cubic"``: the polynomial kernel of KID, k(a, b) = (a.b / D + 1)^3
  (Binkowski et al. 2018).

The unbiased estimator (Gretton et al. 2012, eq. 3) is the U-statistic

    MMD^2_u = sum_{i!=j} k(x_i,x_j) / (n(n-1)) + sum_{i!=j} k(y_i,y_j) / (m(m-1))
              - 2 sum_{i,j} k(x_i,y_j) / (nm),

which can be slightly negative when the distributions are equal.

Gradients: ``mmd2_unbiased_torch`` and ``kernel_means_torch`` return tensors that
keep the autograd graph of their inputs (a GMMN or MMD-GAN loss); ``mmd2_unbiased``
is the same computation under ``torch.no_grad``, returned as a float. The median
bandwidth is always a detached constant (see ``_median_off_diagonal``).

Memory: ``mmd2_unbiased`` and ``mmd_permutation_test`` hold the joint
(n+m, n+m) float64 kernel matrix; keep n + m to a few thousand. ``kid`` works
in blocks and scales to tens of thousands of samples.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch

# Permutations of the MMD test unless a caller asks otherwise (p-value resolution 1/1001).
DEFAULT_PERMUTATIONS = 1000

__all__ = [
    "GAUSSIAN_FACTORS",
    "KERNELS",
    "KIDResult",
    "KernelMeans",
    "MMDTestResult",
    "joint_kernel_matrix",
    "kernel_means_torch",
    "kid",
    "mmd2_from_kernel",
    "mmd2_unbiased",
    "mmd2_unbiased_torch",
    "mmd_permutation_test",
    "polynomial_kernel",
]

GAUSSIAN_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
KERNELS = ("gaussian", "cubic")


class KIDResult(NamedTuple):
    mean: float
    std: float


class MMDTestResult(NamedTuple):
    mmd2: float
    pvalue: float


class KernelMeans(NamedTuple):
    """The three means of the U-statistic, float64 0-dim tensors (graph kept).

    xx = sum_{i!=j} k(x_i, x_j) / (n(n-1)), yy likewise over y, xy = sum_{i,j} k(x_i, y_j) / (nm);
    MMD^2_u = xx + yy - 2 xy.
    """

    xx: torch.Tensor
    yy: torch.Tensor
    xy: torch.Tensor


def _as_tensor(features, name: str, keep_graph: bool = False) -> torch.Tensor:
    """Return a 2-D floating tensor (float32 or float64) on its device; detached unless keep_graph."""
    if not isinstance(features, torch.Tensor):
        features = torch.from_numpy(np.asarray(features))
    if features.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D); got shape {tuple(features.shape)}")
    if features.dtype not in (torch.float32, torch.float64):
        features = features.to(torch.float64)
    if not bool(torch.isfinite(features).all()):
        raise ValueError(f"{name} must be finite; got NaN or Inf values")
    return features if keep_graph else features.detach()


def _check_pair(x, y, min_rows: int = 2, keep_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _as_tensor(x, "x", keep_graph), _as_tensor(y, "y", keep_graph)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same feature dimension; got {x.shape[1]} and {y.shape[1]}")
    if x.shape[0] < min_rows or y.shape[0] < min_rows:
        raise ValueError(f"x and y need at least {min_rows} rows each; got {x.shape[0]} and {y.shape[0]}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype), y.to(dtype)


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> torch.Tensor:
    """(gamma a.b + coef0)^degree for a (n, D), b (m, D) -> float64 (n, m); gamma None means 1/D."""
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    gram = (a @ b.T).to(torch.float64)
    return (gram * gamma + coef0) ** degree


def _joint_sq_distances(z: torch.Tensor) -> torch.Tensor:
    """Squared distances between the rows of z (N, D) -> float64 (N, N), zero diagonal.

    The in-place ops are autograd-safe: none of them overwrites a tensor that a backward
    formula saved (mm saves z, scaling and adds save nothing, clamp saves its own mask).
    """
    sq_norms = (z * z).sum(dim=1).to(torch.float64)
    dist = (z @ z.T).to(torch.float64).mul_(-2)
    dist.add_(sq_norms[:, None]).add_(sq_norms[None, :]).clamp_min_(0)
    dist.fill_diagonal_(0)
    return dist


def _median_off_diagonal(dist: torch.Tensor) -> float:
    """Median of the strictly upper triangle of a square matrix; positive fallback if 0.

    A float, hence a constant for autograd: the bandwidth is not differentiated through,
    as GMMN and MMD-GAN implementations do (its gradient would let the sample move the
    kernel rather than the distributions). Reading it is one host sync.
    """
    dist = dist.detach()
    upper = torch.triu(torch.ones_like(dist, dtype=torch.bool), diagonal=1)
    values = dist[upper]
    median = float(values.median())
    if median > 0:
        return median
    positive = values[values > 0]
    warnings.warn(
        "median pairwise distance is 0 (most samples coincide); using the mean positive distance "
        "as the Gaussian bandwidth",
        RuntimeWarning,
        stacklevel=4,
    )
    return float(positive.mean()) if positive.numel() else 1.0


def joint_kernel_matrix(x, y, kernel: str = "gaussian") -> torch.Tensor:
    """Kernel matrix of the pooled sample [x; y] -> float64 (n+m, n+m).

    Args:
        x: (n, D), y: (m, D) features, float32 or float64.
        kernel: "gaussian" (median-heuristic mixture) or "cubic" (KID's kernel).
    """
    x, y = _check_pair(x, y, min_rows=1)
    return _joint_kernel(x, y, kernel)


def _joint_kernel(x: torch.Tensor, y: torch.Tensor, kernel: str) -> torch.Tensor:
    """joint_kernel_matrix on checked tensors; keeps their autograd graph."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}; got {kernel!r}")
    z = torch.cat([x, y])
    if kernel == "cubic":
        return polynomial_kernel(z, z)
    dist = _joint_sq_distances(z)
    median = _median_off_diagonal(dist)
    return _gaussian_mixture(dist, median)


def _gaussian_mixture(dist: torch.Tensor, median: float) -> torch.Tensor:
    """mean_f exp(-dist / (f * median)) over GAUSSIAN_FACTORS, float64 like dist.

    The factors halve from 4 down to 0.25, so each term is the square of the
    previous one: one exp and four squarings instead of five exps. The squarings are
    out of place because exp's and each square's backward need their saved values.
    """
    term = torch.exp(dist / (-GAUSSIAN_FACTORS[-1] * median))
    matrix = term.clone()
    for _ in GAUSSIAN_FACTORS[:-1]:
        term = term.square()
        matrix += term
    return matrix.div_(len(GAUSSIAN_FACTORS))


def _kernel_means(matrix: torch.Tensor, n: int) -> KernelMeans:
    """The U-statistic's three means from a joint kernel matrix whose first n rows are x."""
    total = matrix.shape[0]
    m = total - n
    if n < 2 or m < 2:
        raise ValueError(f"n must leave at least 2 samples on each side; got n={n}, m={m}")
    k_xx, k_yy, k_xy = matrix[:n, :n], matrix[n:, n:], matrix[:n, n:]
    xx = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return KernelMeans(xx, yy, k_xy.sum() / (n * m))


def mmd2_from_kernel(matrix: torch.Tensor, n: int) -> float:
    """Unbiased MMD^2 from a joint kernel matrix (n+m, n+m) whose first n rows are x."""
    xx, yy, xy = _kernel_means(matrix, n)
    return float(xx + yy - 2 * xy)


def kernel_means_torch(x, y, kernel: str = "gaussian") -> KernelMeans:
    """The U-statistic's means (xx, yy, xy) for x (n, D), y (m, D), n, m >= 2; graph kept.

    The kernel is joint_kernel_matrix's (the Gaussian bandwidth a detached median), so
    differentiating these trains a model against exactly the MMD that evals reports.
    """
    x, y = _check_pair(x, y, keep_graph=True)
    return _kernel_means(_joint_kernel(x, y, kernel), x.shape[0])


def mmd2_unbiased_torch(x, y, kernel: str = "gaussian") -> torch.Tensor:
    """Unbiased MMD^2 between x (n, D) and y (m, D) -> float64 0-dim tensor, graph kept.

    The differentiable form of mmd2_unbiased (a GMMN loss): gradients flow to x and y
    through the kernel values, not through the median bandwidth.
    """
    xx, yy, xy = kernel_means_torch(x, y, kernel)
    return xx + yy - 2 * xy


def mmd2_unbiased(x, y, kernel: str = "gaussian") -> float:
    """Unbiased MMD^2 between x (n, D) and y (m, D), n, m >= 2; float (may be < 0)."""
    with torch.no_grad():
        return float(mmd2_unbiased_torch(x, y, kernel))


def _permutation_masks(total: int, n: int, num_permutations: int, seed: int) -> torch.Tensor:
    """Row 0: the observed split; rows 1..P: random splits. float64 0/1 (P+1, total)."""
    generator = torch.Generator().manual_seed(int(seed))
    # One randperm per row: faster than argsort of a (P, N) uniform matrix on CPU.
    chosen = torch.stack([torch.randperm(total, generator=generator)[:n] for _ in range(num_permutations)])
    masks = torch.zeros(num_permutations + 1, total, dtype=torch.float64)
    masks[0, :n] = 1
    masks[1:].scatter_(1, chosen, 1.0)
    return masks


def _split_statistics(matrix: torch.Tensor, masks: torch.Tensor, n: int) -> torch.Tensor:
    """Unbiased MMD^2 for every split in masks (S, N); masks mark x with 1 -> float64 (S,)."""
    m = matrix.shape[0] - n
    row_sums = matrix.sum(dim=1)
    total, diagonal = row_sums.sum(), matrix.diagonal()
    # Only masks @ matrix costs O(S N^2); every other term follows from it.
    sum_xx = ((masks @ matrix) * masks).sum(dim=1)
    x_rows = masks @ row_sums
    sum_xy = x_rows - sum_xx
    sum_yy = total - 2 * x_rows + sum_xx
    diag_x = masks @ diagonal
    diag_y = diagonal.sum() - diag_x
    return (sum_xx - diag_x) / (n * (n - 1)) + (sum_yy - diag_y) / (m * (m - 1)) - 2 * sum_xy / (n * m)


def mmd_permutation_test(x, y, kernel: str = "gaussian", num_permutations: int = DEFAULT_PERMUTATIONS,
                         seed: int = 0) -> MMDTestResult:
    """Permutation two-sample test with the unbiased MMD^2 statistic.

    The joint kernel matrix is built once; all permuted statistics come from
    one (P, N) x (N, N) matmul of split indicators with it.

    Args:
        x: (n, D), y: (m, D) features; n, m >= 2.
        kernel: "gaussian" or "cubic".
        num_permutations: P >= 1 random splits of the pooled sample.
        seed: seeds the permutations (torch.Generator).

    Returns:
        MMDTestResult(mmd2, pvalue) with pvalue = (1 + #{perm >= observed}) / (1 + P)
        in (0, 1]; small p-values mean x and y differ.
    """
    if int(num_permutations) < 1:
        raise ValueError(f"num_permutations must be >= 1; got {num_permutations}")
    x, y = _check_pair(x, y)
    n = x.shape[0]
    matrix = joint_kernel_matrix(x, y, kernel)
    masks = _permutation_masks(matrix.shape[0], n, int(num_permutations), seed).to(matrix.device)
    stats = torch.cat([_split_statistics(matrix, chunk, n) for chunk in masks.split(1024)])
    observed = stats[0]
    # Splits equal to the observed one up to round-off must count as ">=".
    tolerance = 1e-12 * float(matrix.abs().max())
    exceed = int((stats[1:] >= observed - tolerance).sum())
    return MMDTestResult(float(observed), (1 + exceed) / (1 + int(num_permutations)))


def kid_subset_indices(n_x: int, n_y: int, num_subsets: int, subset_size: int,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Subset indices drawn exactly as torch-fidelity 0.4.0 draws them.

    One ``np.random.RandomState(seed)``; per subset, ``choice(n_x, subset_size,
    replace=False)`` then ``choice(n_y, ...)``. Returns int64 (S, subset_size) twice.
    """
    rng = np.random.RandomState(seed)
    idx_x = np.empty((num_subsets, subset_size), dtype=np.int64)
    idx_y = np.empty((num_subsets, subset_size), dtype=np.int64)
    for i in range(num_subsets):
        idx_x[i] = rng.choice(n_x, subset_size, replace=False)
        idx_y[i] = rng.choice(n_y, subset_size, replace=False)
    return idx_x, idx_y


# KID's helpers below take numpy arrays (CPU) or torch tensors (GPU) alike: they
# use only operators and methods the two share, plus these two adapters.
def _concat(parts):
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


def _take_rows(values, indices: np.ndarray):
    if isinstance(values, torch.Tensor):
        return values[torch.from_numpy(indices).to(values.device)]
    return values[indices]


def _poly_block(a, b, degree: int, gamma: float, coef0: float):
    """(gamma a.b + coef0)^degree, float64 (n, m): inner products in the input dtype."""
    gram = a @ b.T
    if isinstance(gram, torch.Tensor):
        values = gram.to(torch.float64).mul_(gamma)
    else:
        # One pass that casts and scales: the elementwise work is a third of the time.
        values = np.multiply(gram, gamma, dtype=np.float64)
    values += coef0
    if degree != 3:
        return values**degree
    # x * x * x: numpy's generic pow costs about as much as the float32 gemm itself.
    cube = values * values
    cube *= values
    return cube


def _masked_kernel_sums(a, b, mask_a, mask_b, kernel_fn, block: int):
    """sum_{i in A_s, j in B_s} k(a_i, b_j) for every subset s, computed blockwise.

    ``mask_a`` (S, n_a) and ``mask_b`` (S, n_b) are float64 0/1 indicators. When
    ``b is a`` only blocks on and above the diagonal are formed. Returns the
    float64 (S,) sums and, for ``b is a``, the kernel's diagonal (n_a,), else None.
    """
    symmetric = b is a
    sums, diagonals = 0.0, []
    for i0 in range(0, a.shape[0], block):
        rows = slice(i0, i0 + block)
        for j0 in range(i0 if symmetric else 0, b.shape[0], block):
            cols = slice(j0, j0 + block)
            values = kernel_fn(a[rows], b[cols])
            part = ((mask_a[:, rows] @ values) * mask_b[:, cols]).sum(1)
            if symmetric and j0 == i0:
                diagonals.append(values.diagonal() * 1.0)
            sums = sums + (2 * part if symmetric and j0 != i0 else part)
    return sums, (_concat(diagonals) if symmetric else None)


def _subset_masks(indices: np.ndarray, n: int, like):
    """float64 0/1 (S, n) with ones at ``indices``; numpy, or torch on ``like``'s device."""
    masks = np.zeros((indices.shape[0], n))
    masks[np.arange(indices.shape[0])[:, None], indices] = 1.0
    return torch.from_numpy(masks).to(like.device) if isinstance(like, torch.Tensor) else masks


def _kid_by_masks(x, y, idx_x, idx_y, kernel_fn, block: int) -> np.ndarray:
    """Per-subset unbiased MMD^2 from full blockwise kernel sums -> float64 (S,)."""
    size = idx_x.shape[1]
    mask_x, mask_y = _subset_masks(idx_x, x.shape[0], x), _subset_masks(idx_y, y.shape[0], y)
    sum_xx, diag_x = _masked_kernel_sums(x, x, mask_x, mask_x, kernel_fn, block)
    sum_yy, diag_y = _masked_kernel_sums(y, y, mask_y, mask_y, kernel_fn, block)
    sum_xy, _ = _masked_kernel_sums(x, y, mask_x, mask_y, kernel_fn, block)
    values = ((sum_xx - mask_x @ diag_x) + (sum_yy - mask_y @ diag_y)) / (size * (size - 1))
    values = values - 2 * sum_xy / size**2
    return values.cpu().numpy() if isinstance(values, torch.Tensor) else values


def _kid_by_subsets(x, y, idx_x, idx_y, kernel_fn) -> np.ndarray:
    """Per-subset unbiased MMD^2, one subset at a time -> float64 (S,)."""
    size = idx_x.shape[1]
    values = np.empty(idx_x.shape[0])
    for s in range(idx_x.shape[0]):
        a, b = _take_rows(x, idx_x[s]), _take_rows(y, idx_y[s])
        k_xx, k_yy = kernel_fn(a, a), kernel_fn(b, b)
        within = (k_xx.sum() - k_xx.diagonal().sum()) + (k_yy.sum() - k_yy.diagonal().sum())
        values[s] = float(within / (size * (size - 1)) - 2 * kernel_fn(a, b).sum() / size**2)
    return values


def _kid_values(x: torch.Tensor, y: torch.Tensor, idx_x, idx_y, kernel_fn, strategy: str,
                block: int) -> np.ndarray:
    """Per-subset MMD^2 by the cheaper (or the requested) strategy -> float64 (S,)."""
    if x.device.type == "cpu":
        # numpy's OpenBLAS gemm measured about 2x torch's default MKL sgemm on the
        # reference CPU; the whole loop stays in numpy to avoid thread-pool hand-offs.
        x, y = x.numpy(), y.numpy()
    num_subsets, size = idx_x.shape
    full_cost = (x.shape[0] ** 2 + y.shape[0] ** 2) / 2 + x.shape[0] * y.shape[0]
    if strategy == "full" or (strategy == "auto" and full_cost < 3 * num_subsets * size**2):
        return _kid_by_masks(x, y, idx_x, idx_y, kernel_fn, block)
    return _kid_by_subsets(x, y, idx_x, idx_y, kernel_fn)


def _check_kid_options(n_x: int, n_y: int, num_subsets: int, subset_size: int, strategy: str,
                       block_size: int) -> None:
    if strategy not in ("auto", "full", "subsets"):
        raise ValueError(f"strategy must be 'auto', 'full' or 'subsets'; got {strategy!r}")
    if int(num_subsets) < 1 or int(subset_size) < 2 or int(block_size) < 1:
        raise ValueError(
            f"num_subsets must be >= 1, subset_size >= 2 and block_size >= 1; got "
            f"{num_subsets}, {subset_size}, {block_size}"
        )
    if subset_size > min(n_x, n_y):
        raise ValueError(f"subset_size must be <= the number of samples on each side ({n_x}, {n_y}); "
                         f"got {subset_size}")


def kid(x, y, num_subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef0: float = 1.0, seed: int = 2020,
        strategy: str = "auto", block_size: int = 2048) -> KIDResult:
    """Kernel Inception Distance as torch-fidelity 0.4.0 defines it.

    The mean and (population, ddof=0) std over ``num_subsets`` random subsets of
    ``subset_size`` rows from each side of the unbiased MMD^2 with the kernel
    (gamma x.y + coef0)^degree, gamma None meaning 1/D. Subsets are drawn as
    torch-fidelity draws them (``kid_subset_indices``), so with its default
    seed 2020 the values agree with ``torch_fidelity`` on the same features.

    Args:
        x: (n_x, D), y: (n_y, D) features; float64 input gives float64 inner
            products, float32 input float32 ones (sums are float64 either way).
        strategy: "subsets" forms 3 (size, size) kernels per subset; "full"
            forms the full kernels once in blocks of ``block_size`` rows and
            sums each subset with indicator matmuls; "auto" picks the one with
            fewer inner products.
    """
    x, y = _check_pair(x, y)
    _check_kid_options(x.shape[0], y.shape[0], num_subsets, subset_size, strategy, block_size)
    idx_x, idx_y = kid_subset_indices(x.shape[0], y.shape[0], int(num_subsets), int(subset_size), seed)

    gamma = 1.0 / x.shape[1] if gamma is None else float(gamma)
    values = _kid_values(x, y, idx_x, idx_y, lambda a, b: _poly_block(a, b, degree, gamma, coef0),
                         strategy, int(block_size))
    return KIDResult(float(np.mean(values)), float(np.std(values)))
