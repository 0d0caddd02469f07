"""End to end on a local Ray: `zerosum run` with 2 workers, recovery, resume, MLflow, sample.

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
from PIL import Image

from zerosum_testing import JOBS, RAY_WORKER_LINE, run_cli, zerosum_here

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


def test_two_workers_survive_a_killed_worker_and_register_a_model(workdir):
    out = run_cli("run", str(JOBS / "digits-dcgan.yaml"), *TINY,
                  "--set", "schedule.max_rounds=6", "--set", "checkpoint.every_rounds=2",
                  "--set", "eval.every_rounds=3", "--set", "scaling.max_failures=1",
                  cwd=workdir, env={"ZEROSUM_INJECT_FAULT": "round=4,rank=1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (run_dir,) = workdir.glob("runs/digits-dcgan-*")
    assert (run_dir / ".fault-injected").read_text().startswith("killed rank 1 at round 4")
    # The console shows zerosum's lines only; Ray's worker output is in the run folder.
    assert not RAY_WORKER_LINE.search(out.stdout + out.stderr), out.stdout + out.stderr
    assert RAY_WORKER_LOG.search((run_dir / "ray.log").read_text())

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run = client.get_run(run_record(workdir)["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["zerosum.resumed_from_round"] in {"2", "3"}
    for key in ("loss/d", "loss/g", "d/real", "d/fake", "perf/real_samples_per_s", "perf/rounds_per_s"):
        assert steps_of(client, run.info.run_id, key) == [1, 2, 3, 4, 5, 6], key
    assert run.data.params["schedule.max_rounds"] == "6"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "loss_curves.png", "images"} <= artifacts

    version = client.get_model_version_by_alias("digits-dcgan", "candidate")
    assert version.run_id == run.info.run_id
    out = zerosum_here("sample", "models:/digits-dcgan@candidate", "-n", "16", "-o", "grid.png", cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    assert Image.open(workdir / "grid.png").size == (138, 138)  # 4 x 4 tiles of 8 px shown at 32 px + 2 px padding


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

