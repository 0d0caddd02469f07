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


@pytest.fixture(scope="session")
def shared_ray_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ZEROSUM_HOME whose `zerosum up` head (2 CPUs, token auth, 127.0.0.1) the session's
    runs attach to, instead of each starting and stopping a Ray of its own (about 9 s a
    run on 2 cores, bench/startup.py). Stopped by its pid at the end of the session."""
    from zerosum.cluster.local_head import start_head, stop_head

    home = tmp_path_factory.mktemp("zerosum-home")
    state, _ = start_head(num_cpus=2, folder=home / "head")
    try:
        yield home
    finally:
        stop_head(home / "head")
        shutil.rmtree(state.temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its tables made and nothing in it, for tests to copy:
    creating the tables takes 2-3 s of CPU each time (MLflow runs its migrations), and
    a copy is the same empty store. Made in its own folder, which holds the Default
    experiment's artifacts (MLflow fixes that location when it makes the experiment)."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow-template")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    finally:
        os.chdir(cwd)
    return folder / "mlflow.db"


@pytest.fixture
def empty_store_in_tmp_path(tmp_path: Path, empty_mlflow_store: Path) -> Path:
    """tmp_path/mlflow.db, an empty store, for tests that log to `sqlite:///<tmp_path>/mlflow.db`."""
    return Path(shutil.copyfile(empty_mlflow_store, tmp_path / "mlflow.db"))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
            empty_store_in_tmp_path: Path) -> Iterator[Path]:
    """A clean cwd with its own (empty) MLflow store and Ray temp dir, like a new user's folder.

    Its runs attach to the session's shared Ray head, unless the test is marked `own_ray`
    (it then sees no head, and its runs start their own Ray, as a first run does)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{empty_store_in_tmp_path}")
    ray_tmp = Path("/tmp") / f"zsray-{os.getpid()}-{tmp_path.name[-12:]}"
    ray_tmp.mkdir(parents=True, exist_ok=True)
    # Ray's socket paths must stay short (107 bytes), so its temp dir sits under /tmp.
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Never a head the developer keeps up with `zerosum up`: the session's, or none.
    own = request.node.get_closest_marker("own_ray") is not None
    home = tmp_path / "zerosum-home" if own else request.getfixturevalue("shared_ray_home")
    monkeypatch.setenv("ZEROSUM_HOME", str(home))
    yield tmp_path
    shutil.rmtree(ray_tmp, ignore_errors=True)
