"""Helpers shared by the test modules (a plain module: conftest.py files cannot be imported reliably)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
JOBS = REPO_ROOT / "jobs"


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`zerosum ARGS` in a subprocess with the current environment (plus env)."""
    command = [sys.executable, "-m", "zerosum.cli", *args]
    return subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
