"""Frechet distance between two Gaussians fitted to features, in float64.

    FD = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))

Two paths compute it:

- ``frechet_distance`` is the reference: ``scipy.linalg.sqrtm`` of S1 S2, as
  pytorch-fid does (about 12 s for D=2048 on 2 cores).
- ``FIDReference`` is the fast path for repeated evaluation against one fixed
  reference (the real data). It takes the symmetric square root R = S_ref^(1/2)
  once (``eigh``, negative eigenvalues clipped to 0) and caches it. S_ref S is
  similar to the symmetric PSD matrix R S R, so
  Tr((S_ref S)^(1/2)) = sum_i sqrt(max(lambda_i(R S R), 0)), one ``eigvalsh``
  per evaluation (about 0.8 s for D=2048).

Both return a finite, non-negative float. When a covariance is rank-deficient
(fewer samples than dimensions, or a collapsed generator) the value is still
defined but it is biased and sensitive to round-off, so a ``RankDeficientWarning``
is issued.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

from evals.stats import FeatureStats

__all__ = [
    "RankDeficientWarning",
    "frechet_distance",
    "FIDReference",
    "stats_to_fid",
]

# Relative size, against the largest eigenvalue, below which an eigenvalue counts as zero.
_RANK_RTOL = 1e-10


class RankDeficientWarning(RuntimeWarning):
    """A covariance is singular; the Frechet distance is finite but less reliable."""


def _check_mu_cov(mu, cov, name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    if mu.ndim != 1 or cov.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(
            f"{name}: mu must be (D,) and cov (D, D); got {mu.shape} and {cov.shape}"
        )
    if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise ValueError(f"{name}: mu and cov must be finite; got NaN or Inf")
    return mu, cov


def _warn_rank_deficient(what: str) -> None:
    warnings.warn(
        f"{what} is rank-deficient (fewer samples than dimensions, or collapsed features); "
        "the Frechet distance is finite but biased. Use more samples than the feature dimension.",
        RankDeficientWarning,
        stacklevel=3,
    )


def _is_rank_deficient(eigenvalues: np.ndarray) -> bool:
    top = float(np.max(np.abs(eigenvalues), initial=0.0))
    return top == 0.0 or bool(np.any(eigenvalues <= _RANK_RTOL * top))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Reference Frechet distance with ``scipy.linalg.sqrtm``, float64.

    Args:
        mu1, mu2: means, float (D,).
        sigma1, sigma2: covariances, float (D, D), symmetric PSD.
        eps: added to both diagonals if sqrtm of the product is not finite
            (the pytorch-fid fallback).

    Returns:
        FD >= 0 as a Python float. Imaginary parts of the square root, which
        round-off produces for singular products, are dropped; the result is
        clamped at 0.
    """
    mu1, sigma1 = _check_mu_cov(mu1, sigma1, "mu1/sigma1")
    mu2, sigma2 = _check_mu_cov(mu2, sigma2, "mu2/sigma2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must have the same shape; got {mu1.shape} and {mu2.shape}")
    singular = [name for name, cov in (("sigma1", sigma1), ("sigma2", sigma2))
                if _is_rank_deficient(scipy.linalg.eigvalsh(cov))]
    if singular:
        _warn_rank_deficient(" and ".join(singular))
    with warnings.catch_warnings():
        # Reported above as a RankDeficientWarning, with advice.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        _warn_rank_deficient("the covariance product")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            _warn_rank_deficient("the covariance product (large imaginary part in its sqrtm)")
        covmean = covmean.real
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return max(float(value), 0.0)


class FIDReference:
    """The reference side of FID, prepared once: mean, trace and S_ref^(1/2).

    Args:
        mu: float (D,), the reference mean.
        cov: float (D, D), the reference covariance (symmetric PSD).

    Computing ``fid`` then costs two (D, D) matmuls and one ``eigvalsh``.
    """

    def __init__(self, mu, cov):
        mu, cov = _check_mu_cov(mu, cov, "mu/cov")
        cov = (cov + cov.T) / 2
        eigenvalues, eigenvectors = torch.linalg.eigh(torch.from_numpy(cov))
        self.rank_deficient = _is_rank_deficient(eigenvalues.numpy())
        if self.rank_deficient:
            _warn_rank_deficient("the reference covariance")
        root = eigenvalues.clamp_min(0).sqrt()
        self.mu = mu
        self.trace = float(np.trace(cov))
        self.sqrt_cov = ((eigenvectors * root) @ eigenvectors.T).numpy()
        self._sqrt_cov_t = torch.from_numpy(self.sqrt_cov)

    @classmethod
    def from_stats(cls, stats: FeatureStats) -> FIDReference:
        """Build from merged reference statistics (count >= 2)."""
        return cls(stats.mean(), stats.cov())

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    def trace_sqrt_product(self, cov) -> float:
        """Tr((S_ref S)^(1/2)) for cov S float (D, D), via eigvalsh of R S R."""
        cov_t = torch.as_tensor(np.asarray(cov, dtype=np.float64))
        inner = self._sqrt_cov_t @ cov_t @ self._sqrt_cov_t
        eigenvalues = torch.linalg.eigvalsh((inner + inner.T) / 2).numpy()
        if not self.rank_deficient and _is_rank_deficient(eigenvalues):
            _warn_rank_deficient("the evaluated covariance")
        return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())

    def fid(self, stats_or_mu, cov=None) -> float:
        """FD between the reference and ``FeatureStats`` or ``(mu, cov)``; float >= 0."""
        if isinstance(stats_or_mu, FeatureStats):
            if cov is not None:
                raise ValueError("cov must be None when stats_or_mu is a FeatureStats")
            mu, cov = stats_or_mu.mean(), stats_or_mu.cov()
        elif cov is None:
            raise ValueError("cov is required when stats_or_mu is a mean vector")
        else:
            mu = stats_or_mu
        mu, cov = _check_mu_cov(mu, cov, "mu/cov")
        if mu.shape != self.mu.shape:
            raise ValueError(f"mu must have shape {self.mu.shape}; got {mu.shape}")
        diff = mu - self.mu
        trace_sqrt = self.trace_sqrt_product(cov)
        value = diff @ diff + np.trace(cov) + self.trace - 2 * trace_sqrt
        # Round-off can push an exact 0 (identical statistics) slightly negative.
        return max(float(value), 0.0)


def stats_to_fid(fake: FeatureStats, ref: FIDReference | FeatureStats) -> float:
    """FID between generated statistics and the reference (prepared or raw stats)."""
    if isinstance(ref, FeatureStats):
        ref = FIDReference.from_stats(ref)
    if not isinstance(ref, FIDReference):
        raise ValueError(f"ref must be a FIDReference or FeatureStats; got {type(ref).__name__}")
    return ref.fid(fake)
