"""Helpers shared by the test modules (a plain module: conftest.py files cannot be imported reliably)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zerosum.cluster.local_head import free_port
from zerosum.train.session import LocalSession  # noqa: F401 (tests import it from here)

REPO_ROOT = Path(__file__).resolve().parents[1]
# A line Ray streams from a worker process to the driver: "(RayTrainWorker pid=123) ..."
# (often inside colour codes, so not anchored at the line start).
RAY_WORKER_LINE = re.compile(r"\(\w+ pid=\d+(, ip=[\d.]+)?\)")
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
JOBS = REPO_ROOT / "jobs"
# A ring8 job small enough for seconds per campaign trial, big enough that lrs tell trials
# apart by round 50 (campaign tests merge it into their campaign files).
SMALL_RING8_JOB = {
    "data": {"name": "ring8", "num_samples": 5000},
    "model": {"g": {"arch": "mlp", "z_dim": 8, "hidden": [64, 64], "output": "identity", "batch_norm": False},
              "d": {"arch": "mlp", "hidden": [64, 64], "batch_norm": False}},
    "schedule": {"batch_size": 128, "max_rounds": 200, "log_every_rounds": 50},
    "eval": {"every_rounds": 50, "num_samples": 500, "metrics": ["modes"]},
    "checkpoint": {"keep": 2},
}


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`zerosum ARGS` in a subprocess with the current environment (plus env)."""
    command = [sys.executable, "-m", "zerosum.cli", *args]
    return subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


def zerosum_here(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`zerosum ARGS` in this process, in `cwd`: for commands that start no Ray (sample,
    translate), a fresh interpreter would only add seconds of imports. Returns what
    run_cli does: the exit status and the captured stdout and stderr."""
    import contextlib
    import io

    from zerosum.cli import main

    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as stop:  # argparse's usage errors
                code = stop.code if isinstance(stop.code, int) else 1
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["zerosum", *args], code, out.getvalue(), err.getvalue())




@contextmanager
def zerosum_ui(cwd: Path, timeout: float = 90) -> Iterator[int]:
    """`zerosum ui` on a free port in cwd until /health answers; yields the port, then stops
    the server's whole process group (mlflow ui starts a uvicorn child)."""
    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "zerosum.cli", "ui", "--port", str(port)], cwd=cwd,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, status = time.monotonic() + timeout, None
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    status = response.status
            except OSError:
                time.sleep(0.5)
        assert status == 200, f"zerosum ui gave no /health answer on port {port} in {timeout} s"
        yield port
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


def wait_for_health(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200; fail if `process` exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server behind {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} gave no answer in {timeout} s")


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1:port with its store in `folder`; start and kill
    it at will (the same port and store each time). Only the processes it started are
    stopped, by process group."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder, self.port = folder, port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> MlflowServer:
        (self.folder / "artifacts").mkdir(parents=True, exist_ok=True)
        mlflow = Path(sys.executable).parent / "mlflow"
        command = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                   "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}", "--serve-artifacts",
                   "--artifacts-destination", str(self.folder / "artifacts")]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log = (self.folder / "server.log").open("a")
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_for_health(f"{self.uri}/health", timeout, self.process)
        return self

    def kill(self) -> None:
        """SIGKILL the server's process group (as a crashed or lost server goes)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None
