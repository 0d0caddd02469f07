"""zerosum's files: its cache folder and atomic writes (one implementation, in evals.io).

The cache is `$ZEROSUM_CACHE`, else `~/.cache/zerosum`. It holds the trained
classifier featurizers (`featurizers/`), the real side of evaluations
(`real-features/`), converted Inception weights (`inception/`) and inflated copies of
gzipped IDX files that streamed datasets seek in (`idx/`); zerosum passes
this folder to evals, which reads no environment variable of ours.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from evals.io import atomic_torch_save, atomic_write, atomic_write_text

__all__ = ["atomic_torch_save", "atomic_write", "atomic_write_npz", "atomic_write_text", "cache_dir"]

CACHE_ENV = "ZEROSUM_CACHE"


def cache_dir() -> Path:
    """$ZEROSUM_CACHE, else ~/.cache/zerosum."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "zerosum"


def atomic_write_npz(path: Path, **arrays: np.ndarray) -> Path:
    """np.savez (no pickles), atomically."""
    return atomic_write(path, lambda handle: np.savez(handle, **arrays))
