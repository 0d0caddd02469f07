"""Shared fixtures. Data comes only from ../shared/data beside the repo; nothing is downloaded."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from zerosum_testing import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline datasets. CI lays ../shared beside the clone; a missing folder is a setup error."""
    if not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        raise RuntimeError(f"expected MNIST IDX files under {SHARED_DATA}/mnist (../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean cwd with its own MLflow store and Ray temp dir, like a new user's folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    ray_tmp = Path("/tmp") / f"zsray-{os.getpid()}-{tmp_path.name[-12:]}"
    ray_tmp.mkdir(parents=True, exist_ok=True)
    # Ray's socket paths must stay short (107 bytes), so its temp dir sits under /tmp.
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield tmp_path
    shutil.rmtree(ray_tmp, ignore_errors=True)
