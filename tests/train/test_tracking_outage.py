"""The tracking server goes away mid-run: training goes on, nothing is lost or logged twice.

A real `mlflow server` on 127.0.0.1 (tests/zerosum_testing.MlflowServer) is SIGKILLed
while a run trains. In the first test it comes back 20 s later on the same port and
store, and rank 0's outbox sends what it kept, in order. In the second it does not come
back before the run ends: the run finishes anyway and says so, and `zerosum sync` sends
the rest (the registered generator included) once a server is there again.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from zerosum import outbox
from zerosum.config import job_to_dict, job_to_yaml, load_job
from zerosum.records import FolderRecord
from zerosum.tracking import TrackedRun
from zerosum.train.loop import train_worker
from zerosum_testing import JOBS, MlflowServer, StorageSession

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

OUTAGE_S = 20.0
LOG_EVERY = 10


def wait_for_step(run: TrackedRun, key: str, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.last_metric_step(key) >= step:
            return
        time.sleep(0.2)
    raise AssertionError(f"{key} never reached step {step}")


class Outage(threading.Thread):
    """Kills the server once the run has logged `after_step` of loss/d, and starts it again
    `restart_after_s` later (never, when None). The run is `run`, or the one whose folder
    appears under `runs_root`."""

    def __init__(self, server: MlflowServer, run: TrackedRun | None, after_step: int,
                 restart_after_s: float | None = None, runs_root=None):
        super().__init__(daemon=True)
        self.server, self.run_to_watch, self.after_step = server, run, after_step
        self.restart_after_s, self.runs_root = restart_after_s, runs_root
        self.killed_at = self.back_at = None
        self.error: BaseException | None = None
        self.start()

    def find_run(self) -> TrackedRun:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            records = list(self.runs_root.glob("*/record.json"))
            if records:
                return TrackedRun(self.server.uri, FolderRecord.load(records[0].parent).run_id)
            time.sleep(0.5)
        raise AssertionError(f"no run folder appeared under {self.runs_root}")

    def run(self) -> None:  # noqa: D102 - threading.Thread's hook
        try:
            run = self.run_to_watch or self.find_run()
            wait_for_step(run, "loss/d", self.after_step)
            self.server.kill()
            self.killed_at = time.monotonic()
            if self.restart_after_s is not None:
                time.sleep(self.restart_after_s)
                self.server.start()
                self.back_at = time.monotonic()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            self.error = err


def assert_every_step_once(run: TrackedRun, key: str, last_round: int) -> None:
    steps, _ = run.metric_history(key)
    assert steps == list(range(LOG_EVERY, last_round + 1, LOG_EVERY)), f"{key}: {steps}"


def test_training_goes_on_while_the_server_is_down_and_everything_arrives_once(tmp_path, monkeypatch):
    server = MlflowServer(tmp_path / "server").start()
    try:
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        # Retries every 2 s at most, so that the test does not wait out a 30 s backoff.
        monkeypatch.setattr(outbox, "BACKOFF_MAX_S", 2.0)
        rounds = 3000
        spec = load_job(JOBS / "ring8-mlp.yaml", [
            f"schedule.max_rounds={rounds}", f"schedule.log_every_rounds={LOG_EVERY}", "schedule.batch_size=64",
            "data.num_samples=2000", "eval.every_rounds=500", "checkpoint.every_rounds=100",
            "eval.num_samples=256", "eval.metrics=[modes]", "tracking.flush_timeout_s=120"])
        run = TrackedRun.start(server.uri, "outage", spec.name, {}, job_to_yaml(spec))
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        session = StorageSession(run_dir)
        config = {"job": job_to_dict(spec), "tracking_uri": server.uri, "run_id": run.run_id,
                  "run_dir": str(run_dir)}
        outage = Outage(server, run, after_step=5 * LOG_EVERY, restart_after_s=OUTAGE_S)
        train_worker(config, session)
        outage.join(timeout=300)
        assert outage.error is None, outage.error
        killed_at, back_at = outage.killed_at, outage.back_at

        # It trained through the outage: checkpoints were reported while the server was away.
        assert any(killed_at < report["time"] < back_at for report in session.reports)
        assert session.reports[-1]["round"] == rounds
        for key in ("loss/d", "loss/g", "d/real"):
            assert_every_step_once(run, key, rounds)
        modes_steps, _ = run.metric_history("eval/modes")
        assert modes_steps == list(range(500, rounds + 1, 500))
        # MLflow keeps each logged image as a PNG and a compressed copy, named by step.
        images = [a.path for a in run.client.list_artifacts(run.run_id, "images")]
        assert {int(re.search(r"step\+(\d+)", path).group(1)) for path in images} == set(range(500, rounds + 1, 500))
        assert len(images) == 2 * (rounds // 500)
    finally:
        server.kill()


def test_a_server_that_never_returns_leaves_the_rest_to_zerosum_sync(tmp_path, monkeypatch):
    """The driver's own steps (run folder, record, the end of a run) around the loop,
    which runs in this process: the run ends with one line that says what to do."""
    from zerosum.cli import main
    from zerosum.train import checkpoint as ckpt
    from zerosum.train.driver import finish_run, prepare_run

    server = MlflowServer(tmp_path / "server").start()
    try:
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        rounds = 2000
        spec = load_job(JOBS / "ring8-mlp.yaml", [
            f"schedule.max_rounds={rounds}", f"schedule.log_every_rounds={LOG_EVERY}", "schedule.batch_size=64",
            "data.num_samples=2000", "eval.every_rounds=1000", "checkpoint.every_rounds=1000",
            "eval.num_samples=256", "eval.metrics=[modes]", "tracking.flush_timeout_s=2",
            "tracking.register_as=outage-ring8", f"tracking.storage_path={tmp_path / 'runs'}"])
        run_dir, run = prepare_run(spec, resume=False, tracking_uri=server.uri)
        config = {"job": job_to_dict(spec), "tracking_uri": server.uri, "run_id": run.run_id,
                  "run_dir": str(run_dir)}
        outage = Outage(server, run, after_step=3 * LOG_EVERY)
        train_worker(config, StorageSession(run_dir))
        outage.join(timeout=60)
        assert outage.error is None, outage.error
        finished = finish_run(spec, run_dir, run, ckpt.newest_trusted_folder(run_dir))
        assert finished.rounds_done == rounds and finished.model_uri is None
        assert len(finished.notes) == 1
        assert finished.notes[0].startswith(f"the tracking server at {server.uri} did not take the run's results")
        assert finished.notes[0].endswith(f"send them with `zerosum sync {run_dir}`")
        assert FolderRecord.load(run_dir).logged is False
        assert (run_dir / "samples.png").is_file()  # the local part of the end still happened

        server.start()
        assert main(["sync", str(run_dir)]) == 0
        for key in ("loss/d", "loss/g"):
            assert_every_step_once(run, key, rounds)
        assert FolderRecord.load(run_dir).logged is True
        versions = run.client.search_model_versions("name='outage-ring8'")
        assert [v.run_id for v in versions] == [run.run_id]
        assert run.client.get_run(run.run_id).info.status == "FINISHED"
        # A second sync has nothing left to send and logs nothing twice.
        assert main(["sync", str(run_dir)]) == 0
        assert_every_step_once(run, "loss/d", rounds)
    finally:
        server.kill()
