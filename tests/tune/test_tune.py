"""Tune campaigns end to end on a local Ray (2 CPUs): `zerosum tune` in a subprocess, as a
user runs it, on a small ring8 GAN, each test with its own cwd, MLflow store and Ray temp dir."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from zerosum_testing import SMALL_RING8_JOB, run_cli

pytestmark = pytest.mark.integration

BASE = {"name": "ring8-tune-test", **SMALL_RING8_JOB}
OBJECTIVE = {"weights": {"eval/modes": 1.0, "eval/hq_fraction": 1.0}, "mode": "max"}


def write_campaign(workdir: Path, name: str, campaign: dict, **base_changes) -> Path:
    (workdir / "base.yaml").write_text(yaml.safe_dump({**BASE, **base_changes}))
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"campaign": {"base": "base.yaml", "objective": OBJECTIVE, **campaign}}))
    return path


def campaign_folder(workdir: Path, name: str) -> Path:
    (folder,) = workdir.glob(f"runs/{name}-*")
    return folder


def trials_table(folder: Path) -> list[dict]:
    return list(csv.DictReader((folder / "trials.csv").open()))


def ledger(folder: Path) -> dict[str, list[dict]]:
    return {p.stem: [json.loads(line) for line in p.read_text().splitlines()] for p in (folder / "reports").glob("*")}


def test_asha_stops_weak_trials_and_mlflow_holds_the_campaign(workdir):
    # Grid order puts two learning G first and two frozen-G trials after them: ASHA's
    # first rung (round 50) has the better scores to cut the frozen ones. The objective
    # is -MMD^2, which any learning G improves by round 50; mode counts are not (a
    # learning G can still have 0 high-quality samples there, and tie with a frozen one).
    spec = write_campaign(workdir, "asha", {
        "search_space": {"optim.g.lr": {"grid": [3e-3, 2e-3, 1e-8, 1e-8]}, "schedule.d_steps": {"choice": [1, 3]}},
        "scheduler": {"name": "asha", "grace_rounds": 50, "reduction_factor": 2},
        "objective": {"weights": {"eval/mmd2": -1.0}, "mode": "max"},
        "num_samples": 1, "max_concurrent_trials": 2, "tracking": {"register_as": "ring8-champ"}},
        schedule={**BASE["schedule"], "max_rounds": 100}, optim={"d": {"lr": 1.6e-3}},
        eval={**BASE["eval"], "metrics": ["modes", "mmd"], "mmd_permutations": 20})
    out = run_cli("tune", str(spec), cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "champion:" in out.stdout and "models:/ring8-champ@champion" in out.stdout
    folder = campaign_folder(workdir, "asha")
    rows = trials_table(folder)
    assert len(rows) == 4
    assert {r["status"] for r in rows} <= {"completed", "stopped early"}
    assert any(r["status"] == "stopped early" and int(r["rounds"]) < 100 for r in rows), rows

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    record = json.loads((folder / "record.json").read_text())
    parent = client.get_run(record["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["campaign/trials"] == 4
    experiment = client.get_experiment_by_name("ring8-tune-test")
    children = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["zerosum.trial_id"] for c in children} == {r["trial_id"] for r in rows}
    child = children[0]
    assert child.data.params["optim.g.lr"] in {"0.003", "0.002", "1e-08"}
    assert [m.step for m in client.get_metric_history(child.info.run_id, "objective")][:1] == [50]
    assert client.get_metric_history(child.info.run_id, "eval/modes")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "plots", "config.yaml"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/objective_vs_d_steps.png", "plots/objective_over_lr_d_lr_g.png",
                     "plots/best_so_far.png"}

    version = client.get_model_version_by_alias("ring8-champ", "champion")
    assert version.tags["zerosum.campaign"] == "asha"
    best = max(rows, key=lambda r: float(r["objective"]))
    assert version.tags["zerosum.trial_id"] == best["trial_id"]
    assert float(version.tags["zerosum.objective"]) == pytest.approx(float(best["objective"]), rel=1e-5)
    from zerosum.tracking import load_generator

    generator, metadata = load_generator("models:/ring8-champ@champion")
    assert metadata["campaign"] == "asha" and metadata["z_dim"] == 8
    assert generator(torch.zeros(5, 8)).shape == (5, 2)


def test_pbt_exploits_and_explores(workdir):
    spec = write_campaign(workdir, "pbt", {
        "search_space": {"optim.d.lr": {"loguniform": [3e-4, 3e-3]}, "optim.g.lr": {"loguniform": [3e-4, 3e-3]},
                         "schedule.d_steps": {"choice": [1, 2, 3]}},
        "scheduler": {"name": "pbt", "perturbation_interval_rounds": 50, "quantile_fraction": 0.25},
        "num_samples": 4}, schedule={**BASE["schedule"], "max_rounds": 100})
    out = run_cli("tune", str(spec), cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    folder = campaign_folder(workdir, "pbt")
    exploits = [line for line in (folder / "pbt_global.txt").read_text().splitlines() if line.strip()]
    assert exploits, "PBT never exploited"
    assert "pbt exploits:" in out.stdout
    # Explore reached the trials: some trial reported under more than one set of hyperparameters.
    param_sets = {trial: {json.dumps(e["params"], sort_keys=True) for e in entries}
                  for trial, entries in ledger(folder).items()}
    assert len(param_sets) == 4 and any(len(sets) > 1 for sets in param_sets.values()), param_sets
    assert len(trials_table(folder)) == 4


def wait_for_reports(folder_glob: str, workdir: Path, minimum: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = sum(len(p.read_text().splitlines()) for p in workdir.glob(folder_glob))
        if count >= minimum:
            return count
        time.sleep(1)
    raise AssertionError(f"fewer than {minimum} reports after {timeout} s")


def test_killed_campaign_resumes_into_the_same_parent_run(workdir):
    spec = write_campaign(workdir, "resume", {
        "search_space": {"optim.d.lr": {"loguniform": [3e-4, 3e-3]}},
        "num_samples": 4, "max_concurrent_trials": 2}, schedule={**BASE["schedule"], "max_rounds": 200})
    driver = subprocess.Popen([sys.executable, "-m", "zerosum.cli", "tune", str(spec)], cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_reports("runs/resume-*/reports/*.jsonl", workdir, minimum=2, timeout=240)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    folder = campaign_folder(workdir, "resume")
    assert not (folder / "trials.csv").exists()
    parent_id = json.loads((folder / "record.json").read_text())["run_id"]

    out = run_cli("tune", str(spec), "--resume", cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert parent_id in out.stdout
    rows = trials_table(folder)
    assert len(rows) == 4 and all(r["status"] == "completed" and r["rounds"] == "200" for r in rows), rows

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["zerosum.resumes"] == "1"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 4
    assert len(client.search_runs([parent.info.experiment_id], filter_string="tags.`zerosum.kind` = 'campaign'")) == 1


def test_a_streamed_job_trains_inside_a_trial(workdir, shared_data, monkeypatch):
    """data.streaming in a single-process trial: the trial reads MNIST through Ray Data from
    its own process (InProcessSession.dataset_shard), on the session's 2-CPU head, where the
    trial holds 1 CPU and leaves Ray Data the other."""
    # A cache of the test's own: Ray Data's read tasks inflate MNIST's gzipped training split
    # there (streaming.seekable_idx), which nothing on the in-memory path does; the workers of
    # the head see it, since zerosum forwards ZEROSUM_* to them.
    cache = workdir / "cache"
    monkeypatch.setenv("ZEROSUM_CACHE", str(cache))
    limit, batch, rounds = 1000, 32, 20
    spec = write_campaign(workdir, "streamed", {
        "search_space": {"optim.d.lr": {"choice": [2e-4]}}, "objective": {"metric": "eval/mmd2", "mode": "min"},
        "num_samples": 1, "tracking": {"register_as": "streamed-champ"}},
        data={"name": "mnist", "root": str(shared_data / "mnist"), "streaming": True, "limit": limit},
        model={"g": {"arch": "dcgan", "z_dim": 16, "base_channels": 8, "output": "tanh"},
               "d": {"arch": "dcgan", "base_channels": 8}},
        schedule={"batch_size": batch, "max_rounds": rounds, "log_every_rounds": 10},
        eval={"every_rounds": 10, "num_samples": 128, "metrics": ["mmd"], "features": "identity",
              "mmd_permutations": 20})
    # About 35 s on 2 shared cores; a trial whose read tasks never run hangs, and fails here.
    out = run_cli("tune", str(spec), cwd=workdir, timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    folder = campaign_folder(workdir, "streamed")
    (row,) = trials_table(folder)
    assert row["status"] == "completed" and row["rounds"] == str(rounds), row
    (entries,) = ledger(folder).values()
    assert [e["round"] for e in entries] == [10, 20]
    # Each report trained on real images: 10 rounds of batch 32 took a measurable time.
    assert all(e["metrics"]["perf/real_samples_per_s"] > 0 and "eval/mmd2" in e["metrics"] for e in entries)
    stamps = [json.loads(p.read_text()) for p in folder.glob("trial_*/checkpoint_*/report.json")]
    assert sorted(s["round"] for s in stamps) == [10, 20]
    assert "models:/streamed-champ@champion" in out.stdout
    # The data came through the stream: the read tasks inflated the training split (images
    # and labels) into the cache, and only that split (the eval's reals are the test split).
    inflated = sorted(p.name.split("-")[0] for p in (cache / "idx").iterdir())
    assert inflated == ["train", "train"], inflated
