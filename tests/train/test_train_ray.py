"""End to end on a local Ray: `zerosum run` killed and resumed, and MLflow's record of it.

(A lost worker group and model registration are in tests/cluster/test_node_loss.py.)

Each test drives the CLI in a subprocess, as a user would, with its own cwd,
MLflow store and Ray temp dir (the `workdir` fixture).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from zerosum_testing import JOBS, RAY_WORKER_LINE, run_cli

pytestmark = pytest.mark.integration

# A worker's own log file, appended to the run folder's ray.log when the run ends.
RAY_WORKER_LOG = re.compile(r"^===== worker-\w+-\w+-\d+\.(out|err)$", re.MULTILINE)

TINY = ["--set", "schedule.batch_size=16", "--set", "schedule.log_every_rounds=1",
        "--set", "eval.grid_size=16", "--set", "eval.num_samples=64"]


def run_record(workdir: Path) -> dict:
    (record,) = workdir.glob("runs/digits-dcgan-*/record.json")
    return json.loads(record.read_text())


def steps_of(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_driver_killed_mid_run_resumes_at_the_saved_round(workdir):
    args = [sys.executable, "-m", "zerosum.cli", "run", str(JOBS / "digits-dcgan.yaml"), *TINY,
            "--set", "schedule.max_rounds=100", "--set", "checkpoint.every_rounds=10",
            "--set", "eval.every_rounds=100", "--set", "scaling.num_workers=1"]
    driver = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        saved = wait_for_checkpoint(workdir, minimum_round=20, timeout=240)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    out = run_cli("run", str(JOBS / "digits-dcgan.yaml"), *TINY, "--resume", "--set", "schedule.max_rounds=100",
                  "--set", "checkpoint.every_rounds=10", "--set", "eval.every_rounds=100",
                  "--set", "scaling.num_workers=1", cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # The console shows zerosum's lines only; Ray's worker output, this job's only (the
    # session's head serves every run), is in the run folder.
    assert not RAY_WORKER_LINE.search(out.stdout + out.stderr), out.stdout + out.stderr
    (run_dir,) = workdir.glob("runs/digits-dcgan-*")
    assert RAY_WORKER_LOG.search((run_dir / "ray.log").read_text())
    assert "warning: started again from the checkpoint at round" in out.stdout

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run = client.get_run(run_record(workdir)["run_id"])
    assert int(run.data.tags["zerosum.resumed_from_round"]) >= saved
    assert steps_of(client, run.info.run_id, "loss/d") == list(range(1, 101))
    assert run.info.status == "FINISHED"


def wait_for_checkpoint(workdir: Path, minimum_round: int, timeout: float) -> int:
    """Poll until Ray has *registered* a checkpoint at >= minimum_round; its round.

    A checkpoint folder can be on disk before Ray records it in its snapshot (the
    upload comes first); only recorded checkpoints count for a resume.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshots = list(workdir.glob("runs/digits-dcgan-*/checkpoint_manager_snapshot.json"))
        rounds = [int(r) for s in snapshots for r in re.findall(r"round_(\d{7})", s.read_text())]
        if rounds and max(rounds) >= minimum_round:
            return max(rounds)
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint at round >= {minimum_round} within {timeout} s")

