"""The tracking server goes away mid-run: training goes on, nothing is lost or logged twice.

A real `mlflow server` on 127.0.0.1 (tests/zerosum_testing.MlflowServer) is SIGKILLed
while a run trains, and comes back 20 s later on the same port and store, after the run
ended: the run finishes anyway and says so, and `zerosum sync` sends the rest (the
registered generator included).
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from zerosum.config import job_to_dict, load_job
from zerosum.records import FolderRecord
from zerosum.tracking import TrackedRun
from zerosum.train.loop import train_worker
from zerosum_testing import JOBS, LocalSession, MlflowServer

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
    """Kills the server once `run` has logged `after_step` of loss/d; the test restarts it."""

    def __init__(self, server: MlflowServer, run: TrackedRun, after_step: int):
        super().__init__(daemon=True)
        self.server, self.run_to_watch, self.after_step = server, run, after_step
        self.killed_at: float | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:  # noqa: D102 - threading.Thread's hook
        try:
            wait_for_step(self.run_to_watch, "loss/d", self.after_step)
            self.server.kill()
            self.killed_at = time.monotonic()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            self.error = err


def assert_every_step_once(run: TrackedRun, key: str, last_round: int) -> None:
    steps, _ = run.metric_history(key)
    assert steps == list(range(LOG_EVERY, last_round + 1, LOG_EVERY)), f"{key}: {steps}"


def test_training_goes_on_while_the_server_is_down_and_zerosum_sync_sends_the_rest(tmp_path, monkeypatch):
    """The driver's own steps (run folder, record, the end of a run) around the loop,
    which runs in this process. The server is killed after 30 logged rounds and is back
    20 s later on the same port and store, after the run has ended: training went on
    meanwhile, the run ended with one line that says what to do, and `zerosum sync` sends
    every step once, then logs and registers the generator. (The sender thread's own
    retries, with a server that refuses and then takes writes, are tests/core/test_outbox.py.)"""
    import mlflow

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
        session = LocalSession(run_dir)
        train_worker(config, session)
        outage.join(timeout=60)
        assert outage.error is None, outage.error
        assert any(report["time"] > outage.killed_at for report in session.reports)  # trained on
        finished = finish_run(spec, run_dir, run, ckpt.newest_trusted_folder(run_dir))
        assert finished.rounds_done == rounds and finished.model_uri is None
        assert len(finished.notes) == 1
        assert finished.notes[0].startswith(f"the tracking server at {server.uri} did not take the run's results")
        assert finished.notes[0].endswith(f"send them with `zerosum sync {run_dir}`")
        assert FolderRecord.load(run_dir).logged is False
        assert (run_dir / "samples.png").is_file()  # the local part of the end still happened

        time.sleep(max(0.0, outage.killed_at + OUTAGE_S - time.monotonic()))
        server.start()
        uri_before = mlflow.get_tracking_uri()
        assert main(["sync", str(run_dir)]) == 0
        # Logging the model through MLflow's fluent API left its process-wide URI as it was.
        assert mlflow.get_tracking_uri() == uri_before != server.uri
        for key in ("loss/d", "loss/g"):
            assert_every_step_once(run, key, rounds)
        assert FolderRecord.load(run_dir).logged is True
        versions = run.client.search_model_versions("name='outage-ring8'")
        assert [v.run_id for v in versions] == [run.run_id]
        assert run.client.get_run(run.run_id).info.status == "FINISHED"
        # A second sync has nothing left to send and logs nothing twice.
        assert main(["sync", str(run_dir)]) == 0
        assert_every_step_once(run, "loss/d", rounds)
        # Sample grids, logged at each eval while the server was away, arrived too (MLflow
        # keeps each as a PNG and a compressed copy, named by step).
        images = [a.path for a in run.client.list_artifacts(run.run_id, "images")]
        assert {int(re.search(r"step\+(\d+)", path).group(1)) for path in images} == {1000, 2000}
    finally:
        server.kill()
