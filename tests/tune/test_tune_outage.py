"""The tracking server goes away mid-campaign: trials train on, nothing is lost or logged twice.

`zerosum tune` runs against a real `mlflow server` on 127.0.0.1 that is SIGKILLed once
the trial has reported round 100, and comes back on the same port and store after the
campaign has ended. The campaign ends anyway with one line that says what to do, and
`zerosum sync CAMPAIGN_FOLDER` sends the trial's kept writes and the champion.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from zerosum.tracking import TrackedRun
from zerosum_testing import SMALL_RING8_JOB, MlflowServer, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROUNDS, EVERY = 300, 50


def reported_rounds(workdir) -> list[int]:
    return [json.loads(line)["round"] for path in workdir.glob("runs/away-*/reports/*")
            for line in path.read_text().splitlines()]


def test_trials_train_on_while_the_server_is_down_and_zerosum_sync_sends_the_rest(workdir):
    base = {"name": "ring8-away", **SMALL_RING8_JOB,
            "schedule": {**SMALL_RING8_JOB["schedule"], "max_rounds": ROUNDS, "log_every_rounds": EVERY},
            "checkpoint": {"keep": 2, "every_rounds": EVERY}, "tracking": {"flush_timeout_s": 2}}
    (workdir / "base.yaml").write_text(yaml.safe_dump(base))
    (workdir / "away.yaml").write_text(yaml.safe_dump({"campaign": {
        "base": "base.yaml", "objective": {"weights": {"eval/modes": 1.0}, "mode": "max"},
        "search_space": {"optim.g.lr": {"grid": [1e-3]}}, "num_samples": 1,
        "tracking": {"register_as": "ring8-away"}}}))
    server = MlflowServer(workdir / "server").start()
    try:
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri}
        campaign = subprocess.Popen([sys.executable, "-m", "zerosum.cli", "tune", "away.yaml"], cwd=workdir, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while max(reported_rounds(workdir), default=0) < 2 * EVERY:
            assert time.monotonic() < deadline and campaign.poll() is None, campaign.communicate()
            time.sleep(0.2)
        server.kill()
        stdout, stderr = campaign.communicate(timeout=300)
        assert campaign.returncode == 0, stdout[-3000:] + stderr[-3000:]
        (folder,) = workdir.glob("runs/away-*")
        assert (f"note:            the tracking server at {server.uri} did not take the campaign's results"
                in stdout), stdout
        assert f"send them with `zerosum sync {folder}`" in stdout
        # The trial trained to the end while the server was away; the table is on disk.
        (row,) = list(csv.DictReader((folder / "trials.csv").open()))
        assert row["status"] == "completed" and row["rounds"] == str(ROUNDS), row
        assert json.loads((folder / "record.json").read_text())["logged"] is False

        server.start()
        out = run_cli("sync", str(folder), cwd=workdir, env={"MLFLOW_TRACKING_URI": server.uri})
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "model:        models:/ring8-away@champion" in out.stdout
        record = json.loads((folder / "record.json").read_text())
        assert record["logged"] is True
        parent = TrackedRun(server.uri, record["run_id"])
        assert parent.client.get_run(parent.run_id).info.status == "FINISHED"
        trial = TrackedRun(server.uri, row["mlflow_run_id"])
        assert trial.client.get_run(trial.run_id).info.status == "FINISHED"
        for key in ("objective", "loss/d", "loss/g"):
            steps, _ = trial.metric_history(key)
            assert steps == list(range(EVERY, ROUNDS + 1, EVERY)), (key, steps)
        versions = trial.client.search_model_versions("name='ring8-away'")
        assert [v.run_id for v in versions] == [trial.run_id]
        # A second sync finds nothing to send and logs nothing twice.
        again = run_cli("sync", str(folder), cwd=workdir, env={"MLFLOW_TRACKING_URI": server.uri})
        assert again.returncode == 0 and "sent 0 tracking writes" in again.stdout, again.stdout + again.stderr
        assert trial.metric_history("objective")[0] == list(range(EVERY, ROUNDS + 1, EVERY))
    finally:
        server.kill()
