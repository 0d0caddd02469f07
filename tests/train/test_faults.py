"""Faults inside one worker, healed without Ray: a diverged run rolls back, a checkpoint
cut short is skipped on resume. The loop runs in-process on a LocalSession (checkpoints
kept as Ray keeps them), logging to an MLflow store in tmp_path."""

from __future__ import annotations

import math

import pytest
import torch

from zerosum.config import job_to_dict, job_to_yaml, load_job
from zerosum.tracking import TrackedRun
from zerosum.train import checkpoint as ckpt
from zerosum.train.loop import train_worker
from zerosum_testing import JOBS, LocalSession

# Each test logs to sqlite:///<tmp_path>/mlflow.db: a copy of an empty store, not a new one.
pytestmark = pytest.mark.usefixtures("empty_store_in_tmp_path")

LR = 1.0e-3  # ring8-mlp.yaml's lr for both players
SMALL = ["data.num_samples=2000", "schedule.batch_size=64", "schedule.log_every_rounds=5",
         "eval.every_rounds=10", "checkpoint.every_rounds=10", "checkpoint.keep=null",
         "eval.num_samples=256", "eval.metrics=[modes]"]


def small_job(rounds: int, *extra: str):
    return load_job(JOBS / "ring8-mlp.yaml", [*SMALL, f"schedule.max_rounds={rounds}", *extra])


def train(spec, tmp_path, session, fault=None) -> TrackedRun:
    """The loop for `spec` on `session`, logged to a new MLflow run; -> the run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = TrackedRun.start(uri, "faults", spec.name, {}, job_to_yaml(spec))
    train_worker({"job": job_to_dict(spec), "tracking_uri": uri, "run_id": run.run_id, "fault": fault}, session)
    return run


def test_a_nan_critic_is_rolled_back_once_with_halved_lrs(tmp_path):
    spec = small_job(40, "schedule.on_divergence=rollback")
    session = LocalSession(tmp_path)
    # D's weights become NaN before round 15; the eval at round 20 sees the NaN losses.
    fault = {"kind": "nan", "round": 15, "rank": 0, "marker": str(tmp_path / "fault")}
    run = train(spec, tmp_path, session, fault)

    # Round 10 passed the guard; 20 diverged and was not kept; rounds 11-40 trained again.
    assert [r["folder"] for r in session.reports] == [
        "round_0000010", "round_0000020-r1", "round_0000030-r1", "round_0000040-r1"]
    assert run.metric_history("health/rollbacks") == ([20], [1.0])
    assert run.metric_history("health/lr_scale") == ([20], [0.5])
    assert run.tags()["zerosum.rollback.1"].startswith("round 20: non-finite loss")
    assert "rolled back to round 10, lrs x0.5" in run.tags()["zerosum.rollback.1"]
    assert "zerosum.stop_reason" not in run.tags()

    final, _ = ckpt.read_checkpoint(tmp_path / "round_0000040-r1", 0)
    assert final["rounds_done"] == 40
    assert final["extra/health"] == {"good": True, "rollbacks": 1, "lr_scale": 0.5}
    for side in ("g", "d"):
        # Exact: 0.5 * 1e-3 is one float multiplication, stored as a Python float.
        assert [g["lr"] for g in final["optimizers"][side]["param_groups"]] == [LR * 0.5]
    for player in final["players"].values():
        assert all(torch.isfinite(t).all() for t in player.values() if t.is_floating_point())
    # Every logged loss after the rollback is finite again.
    steps, values = run.metric_history("loss/d")
    assert all(math.isfinite(v) for s, v in zip(steps, values) if s > 20)


def test_a_divergence_with_the_default_policy_stops_on_the_last_good_checkpoint(tmp_path):
    session = LocalSession(tmp_path)
    fault = {"kind": "nan", "round": 15, "rank": 0, "marker": str(tmp_path / "fault")}
    run = train(small_job(40), tmp_path, session, fault)
    assert [r["folder"] for r in session.reports] == ["round_0000010"]
    assert run.tags()["zerosum.stopped_at_round"] == "20"
    assert "non-finite loss" in run.tags()["zerosum.stop_reason"]


def test_rollbacks_stop_at_max_rollbacks(tmp_path):
    """A fault that poisons D every time round 15 comes round: two rollbacks, then a stop."""
    spec = small_job(60, "schedule.on_divergence=rollback", "schedule.max_rollbacks=2")
    session = LocalSession(tmp_path)
    fault = {"kind": "nan", "round": 15, "rank": 0}
    # The hook fires once per marker file; a fresh marker at each reading fires it every time.
    markers = iter(str(tmp_path / f"fault{i}") for i in range(10))

    class Refault(dict):
        def __getitem__(self, key):
            return next(markers) if key == "marker" else super().__getitem__(key)

    run = train(spec, tmp_path, session, Refault(fault))
    assert run.metric_history("health/rollbacks") == ([20, 20], [1.0, 2.0])
    assert "after 2 rollbacks: schedule.max_rollbacks" in run.tags()["zerosum.stop_reason"]
    assert [r["folder"] for r in session.reports] == ["round_0000010"]


def test_rollback_needs_the_guard_and_evals():
    from zerosum.errors import ConfigError

    with pytest.raises(ConfigError, match="schedule.on_divergence: rollback .* eval.stop.divergence_guard"):
        small_job(40, "schedule.on_divergence=rollback", "eval.stop.divergence_guard=false")
    with pytest.raises(ConfigError, match="set eval.every_rounds"):
        small_job(40, "schedule.on_divergence=rollback", "eval.every_rounds=null")


def trained_to_30(tmp_path):
    """A run with whole checkpoints at rounds 10, 20 and 30 in tmp_path/'first'."""
    storage = tmp_path / "first"
    storage.mkdir()
    train(small_job(30), tmp_path, LocalSession(storage))
    return storage


def test_resume_skips_a_truncated_checkpoint_for_the_one_before(tmp_path):
    storage = trained_to_30(tmp_path)
    state = storage / "round_0000030" / ckpt.STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    session = LocalSession(storage, resume_from=storage / "round_0000030")
    session.storage = tmp_path / "second"
    session.storage.mkdir()
    run = train(small_job(40), tmp_path, session)
    # It went on from round 20: the first checkpoint it reports is round 30's again.
    assert [r["folder"] for r in session.reports] == ["round_0000030", "round_0000040"]
    skipped, resumed = run.warnings()[:2]
    assert skipped.startswith(f"checkpoint round_0000030 failed verification and was skipped: state.pt has "
                              f"{state.stat().st_size} bytes, the manifest says ")
    assert resumed == "resumed from checkpoint round_0000020 instead"
    assert run.tags()["zerosum.resumed_from_round"] == "20"


def test_resume_without_a_manifest_uses_the_one_before_and_with_none_starts_fresh(tmp_path):
    storage = trained_to_30(tmp_path)
    (storage / "round_0000030" / "manifest-rank0.json").unlink()
    session = LocalSession(storage, resume_from=storage / "round_0000030")
    session.storage = tmp_path / "second"
    session.storage.mkdir()
    run = train(small_job(40), tmp_path, session)
    assert "checkpoint round_0000030 failed verification and was skipped: no manifest-rank0.json" in run.warnings()[0]
    assert session.reports[0]["folder"] == "round_0000030"

    for name in ("round_0000010", "round_0000020"):
        (storage / name / "manifest-rank0.json").unlink()
    session = LocalSession(storage, resume_from=storage / "round_0000030")
    session.storage = tmp_path / "third"
    session.storage.mkdir()
    run = train(small_job(20), tmp_path, session)
    assert run.warnings()[-1] == "no checkpoint passed verification: training starts fresh from round 0"
    assert [r["folder"] for r in session.reports] == ["round_0000010", "round_0000020"]
