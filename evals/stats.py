"""Mergeable first and second moments of feature vectors.

``FeatureStats`` keeps three sufficient statistics in float64: the sample count,
the sum of the features (D,) and the sum of their outer products (D, D). Each
Ray worker (or each batch) builds its own; they merge by addition, and the
mean and covariance of the union follow exactly. This is what the Frechet
distance needs, without ever holding all features in one place.

Distributed use (the caller owns the collective; evals never imports ray)::

    stats = FeatureStats.from_features(my_share)          # on every rank
    flat = stats.to_tensor(device)                          # float64 (1 + D + D*D,)
    torch.distributed.all_reduce(flat, op=ReduceOp.SUM)
    merged = FeatureStats.from_tensor(flat, dim=stats.dim)  # same on every rank

Methods that change a ``FeatureStats`` say so: ``update`` adds a batch in
place; ``merge`` and ``merge_all`` return a new object and leave inputs alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from evals.io import atomic_write

__all__ = ["FeatureStats", "features_to_stats"]

_FORMAT_VERSION = 1


def _as_float64_numpy(features, name: str = "features") -> np.ndarray:
    """Return features as a C-contiguous float64 numpy array (N, D)."""
    if isinstance(features, torch.Tensor):
        features = features.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D); got shape {tuple(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite; got NaN or Inf values")
    return np.ascontiguousarray(array)


class FeatureStats:
    """Count, sum and sum of outer products of feature vectors, in float64.

    Attributes:
        count: number of feature vectors seen (int).
        feature_sum: float64 (D,), the sum of the vectors.
        outer_sum: float64 (D, D), the sum of x x^T over the vectors.
    """

    def __init__(self, count: int, feature_sum: np.ndarray, outer_sum: np.ndarray):
        dim = int(np.shape(feature_sum)[0]) if np.ndim(feature_sum) == 1 else -1
        if dim < 1 or np.shape(outer_sum) != (dim, dim):
            raise ValueError(
                "feature_sum must have shape (D,) and outer_sum (D, D) with D >= 1; got "
                f"{np.shape(feature_sum)} and {np.shape(outer_sum)}"
            )
        if int(count) < 0:
            raise ValueError(f"count must be >= 0; got {count}")
        self.count = int(count)
        self.feature_sum = np.array(feature_sum, dtype=np.float64)
        self.outer_sum = np.array(outer_sum, dtype=np.float64)

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return int(self.feature_sum.shape[0])

    def __repr__(self) -> str:
        return f"FeatureStats(count={self.count}, dim={self.dim})"

    @classmethod
    def empty(cls, dim: int) -> FeatureStats:
        """Statistics of zero vectors of dimension ``dim`` (the identity of ``merge``)."""
        if int(dim) < 1:
            raise ValueError(f"dim must be >= 1; got {dim}")
        return cls(0, np.zeros(dim), np.zeros((dim, dim)))

    @classmethod
    def from_features(cls, features) -> FeatureStats:
        """Statistics of ``features``: torch tensor or numpy array (N, D), any float dtype."""
        array = _as_float64_numpy(features)
        return cls(array.shape[0], array.sum(axis=0), array.T @ array)

    def update(self, features) -> FeatureStats:
        """Add a batch of features (N, D) in place; returns ``self`` for chaining."""
        array = _as_float64_numpy(features)
        if array.shape[1] != self.dim:
            raise ValueError(f"features must have {self.dim} columns; got {array.shape[1]}")
        self.count += array.shape[0]
        self.feature_sum += array.sum(axis=0)
        self.outer_sum += array.T @ array
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Statistics of the union of both samples, as a new object."""
        if not isinstance(other, FeatureStats):
            raise ValueError(f"other must be a FeatureStats; got {type(other).__name__}")
        if other.dim != self.dim:
            raise ValueError(f"other must have dim {self.dim}; got {other.dim}")
        return FeatureStats(
            self.count + other.count,
            self.feature_sum + other.feature_sum,
            self.outer_sum + other.outer_sum,
        )

    @classmethod
    def merge_all(cls, stats: Iterable[FeatureStats]) -> FeatureStats:
        """Merge a non-empty iterable of statistics of the same dimension."""
        stats = list(stats)
        if not stats:
            raise ValueError("stats must hold at least one FeatureStats; got none")
        merged = FeatureStats.empty(stats[0].dim)
        for part in stats:
            merged = merged.merge(part)
        return merged

    def mean(self) -> np.ndarray:
        """Sample mean, float64 (D,). Needs count >= 1."""
        if self.count < 1:
            raise ValueError("mean needs count >= 1; these statistics are empty")
        return self.feature_sum / self.count

    def cov(self) -> np.ndarray:
        """Unbiased sample covariance (ddof=1), float64 (D, D); equals np.cov(x, rowvar=False).

        Needs count >= 2. The result is symmetrised to remove round-off asymmetry.
        """
        if self.count < 2:
            raise ValueError(f"cov needs count >= 2; got count={self.count}")
        mean = self.mean()
        cov = (self.outer_sum - self.count * np.outer(mean, mean)) / (self.count - 1)
        return (cov + cov.T) / 2

    def to_tensor(self, device=None) -> torch.Tensor:
        """Flatten into one float64 tensor (1 + D + D*D,): [count, sum, outer_sum.ravel()].

        Summing these tensors over workers (all_reduce SUM) and calling
        ``from_tensor`` gives the merged statistics.
        """
        flat = np.concatenate(([float(self.count)], self.feature_sum, self.outer_sum.ravel()))
        return torch.from_numpy(flat).to(device=device or "cpu")

    @classmethod
    def from_tensor(cls, flat: torch.Tensor, dim: int) -> FeatureStats:
        """Inverse of ``to_tensor``: ``flat`` is a tensor (1 + dim + dim*dim,) on any device."""
        expected = 1 + dim + dim * dim
        if not isinstance(flat, torch.Tensor) or flat.ndim != 1 or flat.numel() != expected:
            shape = tuple(flat.shape) if isinstance(flat, torch.Tensor) else type(flat).__name__
            raise ValueError(f"flat must be a 1-D tensor of {expected} values for dim={dim}; got {shape}")
        values = flat.detach().to("cpu", torch.float64).numpy()
        count = float(values[0])
        if count < 0 or count != round(count):
            raise ValueError(f"flat[0] must be a non-negative whole count; got {count}")
        return cls(int(round(count)), values[1 : 1 + dim], values[1 + dim :].reshape(dim, dim))

    def save(self, path) -> Path:
        """Write to ``path`` (.npz) atomically: a temporary name, then os.replace."""
        arrays = {"version": np.int64(_FORMAT_VERSION), "count": np.int64(self.count),
                  "feature_sum": self.feature_sum, "outer_sum": self.outer_sum}
        return atomic_write(path, lambda handle: np.savez(handle, **arrays))

    @classmethod
    def load(cls, path) -> FeatureStats:
        """Read statistics written by ``save`` (no pickles are loaded)."""
        with np.load(Path(path), allow_pickle=False) as data:
            missing = sorted({"version", "count", "feature_sum", "outer_sum"} - set(data.files))
            if missing:
                raise ValueError(f"{path} is not a FeatureStats file: missing {missing}")
            version = int(data["version"])
            if version != _FORMAT_VERSION:
                raise ValueError(f"{path}: format version must be {_FORMAT_VERSION}; got {version}")
            return cls(int(data["count"]), data["feature_sum"], data["outer_sum"])


def features_to_stats(features) -> FeatureStats:
    """Alias of ``FeatureStats.from_features``: features (N, D) -> FeatureStats."""
    return FeatureStats.from_features(features)
