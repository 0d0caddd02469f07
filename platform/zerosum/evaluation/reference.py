"""The real side of an evaluation: held-out reals through the extractor, cached on disk.

The cache is keyed by dataset, split, extractor, weights and sample count, and lives
under `<cache>/real-features/`; concurrent ranks may race to fill one entry, so it is
written atomically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evals.fid import FIDReference
from evals.stats import FeatureStats
from zerosum.catalog import is_image_data
from zerosum.config import DataSpec, JobSpec
from zerosum.data import decode_folder_images, folder_files, images_only, load_dataset, to_unit_images
from zerosum.files import atomic_write_npz, cache_dir

# The held-out reals an evaluation compares with: one fixed random subset for every run,
# so that runs (and seeds) are judged against the same reals.
REFERENCE_SEED = 0


@dataclass
class RealReference:
    """features float64 (N, D); probs float64 (N, K) or None; FID reference with cached sqrt."""

    features: torch.Tensor
    probs: torch.Tensor | None
    fid: FIDReference


def extract(extractor, samples: torch.Tensor, scale: str, is_image: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(features float64 (N, D), probs float64 (N, K) or None) of samples in the data's scale."""
    inputs = to_unit_images(samples, scale) if is_image else samples
    if hasattr(extractor, "features_and_probs"):
        return extractor.features_and_probs(inputs)
    return extractor(inputs), None


def weights_of(extractor, spec: JobSpec) -> str:
    """The extractor's weights file: its own, else the job's classifier ('' for none)."""
    return str(getattr(extractor, "weights_path", None) or spec.eval.featurizer_path or "")


def weights_identity(extractor, spec: JobSpec) -> str:
    """The extractor's weights file as `path:size:mtime`, so a retrained classifier at the
    same path misses ('' for an extractor without weights: identity features)."""
    weights = weights_of(extractor, spec)
    if not weights or not Path(weights).is_file():
        return str(weights)
    stat = Path(weights).stat()
    return f"{weights}:{stat.st_size}:{stat.st_mtime_ns}"


def samples_cache_path(extractor, spec: JobSpec, samples: torch.Tensor, scale: str) -> Path:
    """`<cache>/sample-features/<extractor>-<hash>.npz`, the hash of the samples' bytes, shape,
    dtype and scale and of the weights: the same samples through the same weights hit."""
    digest = hashlib.sha256()
    array = samples.detach().to("cpu").contiguous()
    digest.update(f"{tuple(array.shape)}:{array.dtype}:{scale}:{weights_identity(extractor, spec)}".encode())
    digest.update(array.numpy().tobytes())
    name = getattr(extractor, "name", "features")
    return cache_dir() / "sample-features" / f"{name}-{digest.hexdigest()[:20]}.npz"


def cached_extract(extractor, spec: JobSpec, samples: torch.Tensor, scale: str,
                   is_image: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`extract`, through a disk cache keyed by the samples' content: for samples that are
    scored again unchanged, such as a benchmark's real row (10,000 training reals through
    Inception take about 13 minutes on a 2-core CPU, for every run of an FID suite)."""
    path = samples_cache_path(extractor, spec, samples, scale)
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            return torch.from_numpy(cached["features"]), (torch.from_numpy(cached["probs"]) if "probs" in cached
                                                          else None)
    features, probs = extract(extractor, samples, scale, is_image)
    atomic_write_npz(path, features=features.numpy(), **({"probs": probs.numpy()} if probs is not None else {}))
    return features, probs


def reference_cache_path(spec: JobSpec, extractor, split: str, count: int) -> Path:
    """`<cache>/real-features/<dataset>-<split>-<extractor>-<tag>-n<count>.npz`; the tag hashes
    the weights, the data root, data.limit, data.num_samples and data.seed (the draws of
    stacked-mnist), so that a change of any of them misses."""
    weights = weights_of(extractor, spec)
    data = spec.data
    # data.seed 0 hashes as the key did before the field existed: caches made then still hit.
    key = f"{weights}:{data.root}:{data.limit}:{data.num_samples}" + (f":{data.seed}" if data.seed else "")
    tag = hashlib.sha1(key.encode()).hexdigest()[:10]
    name = getattr(extractor, "name", "features")
    return cache_dir() / "real-features" / f"{spec.data.name}-{split}-{name}-{tag}-random{REFERENCE_SEED}-n{count}.npz"


def held_out_split(data: DataSpec) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
    """(size of the test split, a function from row indices (n,) to those samples). A folder
    is listed, not loaded: it may be larger than memory (data.streaming), and only the chosen
    images are decoded. The mixtures' test split is a draw seeded apart from the run's."""
    data = images_only(data)
    if data.name == "folder":
        files, _ = folder_files(Path(data.root))  # listed once, for the size and the picks
        return len(files), lambda rows: decode_folder_images(data, [files[row] for row in rows.tolist()])
    test = load_dataset(data, "test", seed=REFERENCE_SEED)
    return len(test), lambda rows: test.samples[rows]


def real_reference(spec: JobSpec, extractor) -> RealReference:
    """Features of `eval.num_samples` held-out reals, from the disk cache when present."""
    # Seeded apart from the run: every seed of a job is judged against the same reals
    # (for the mixtures the test split is a draw, and the cache would otherwise hold
    # whichever seed's draw came first).
    size, pick = held_out_split(spec.data)
    count = min(spec.eval.num_samples, size)
    path = reference_cache_path(spec, extractor, "test", count)
    # A seeded random subset, not the first `count`: MNIST's test set is ordered by writer
    # population (its first 5,000 images are the neater SD-3 half), and against its first 512
    # images even real training images fail the MMD test (p = 0.005).
    chosen = torch.randperm(size, generator=torch.Generator().manual_seed(REFERENCE_SEED))[:count]
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            features = torch.from_numpy(cached["features"])
            probs = torch.from_numpy(cached["probs"]) if "probs" in cached else None
    else:
        features, probs = extract(extractor, pick(chosen), spec.data.scale, is_image_data(spec.data.name))
        arrays = {"features": features.numpy()} | ({"probs": probs.numpy()} if probs is not None else {})
        atomic_write_npz(path, **arrays)
    return RealReference(features, probs, FIDReference.from_stats(FeatureStats.from_features(features)))
