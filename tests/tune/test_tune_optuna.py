"""An Optuna TPE campaign end to end (the `tune-optuna` extra, installed by `.[test]`):
`zerosum tune` in a subprocess on a small ring8 GAN over jobs/ring8-mlp.yaml."""

import csv
import json
import math
import os
import pickle

import pytest
import yaml
from mlflow.tracking import MlflowClient

from zerosum_testing import JOBS, SMALL_RING8_JOB, run_cli

pytestmark = pytest.mark.integration

LR_BOUNDS = (3e-4, 3e-3)
D_STEPS = [1, 2]
TRIALS = 3


def test_optuna_campaign_samples_records_and_registers_a_champion(workdir):
    spec = workdir / "optuna.yaml"
    spec.write_text(yaml.safe_dump({
        "campaign": {
            "base": str(JOBS / "ring8-mlp.yaml"),
            "search_space": {"optim.d.lr": {"loguniform": list(LR_BOUNDS)}, "schedule.d_steps": {"choice": D_STEPS}},
            "objective": {"mode": "max", "weights": {"eval/modes": 1.0, "eval/hq_fraction": 1.0}},
            "search": {"algorithm": "optuna", "seed": 0},
            "num_samples": TRIALS, "max_concurrent_trials": 2,
            "tracking": {"register_as": "ring8-optuna"}},
        # The base job, smaller: seconds per trial.
        **SMALL_RING8_JOB,
        "schedule": {**SMALL_RING8_JOB["schedule"], "max_rounds": 100},
    }))
    out = run_cli("tune", str(spec), cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "models:/ring8-optuna@champion" in out.stdout

    (folder,) = workdir.glob("runs/optuna-*")
    rows = list(csv.DictReader((folder / "trials.csv").open()))
    assert len(rows) == TRIALS and all(r["status"] == "completed" and r["rounds"] == "100" for r in rows), rows
    lrs = [float(r["optim.d.lr"]) for r in rows]
    assert len(set(lrs)) == TRIALS and all(LR_BOUNDS[0] <= lr <= LR_BOUNDS[1] for lr in lrs), lrs
    assert {int(r["schedule.d_steps"]) for r in rows} <= set(D_STEPS), rows

    # Optuna, not Tune's random variant generator, drew these: its study (saved by Tune with
    # the searcher) holds one finished trial per row, with the same params.
    import optuna  # after the run: without it the CLI already failed, naming the extra

    (state,) = folder.glob("searcher-state-*.pkl")
    study = pickle.loads(state.read_bytes())["_ot_study"]
    assert isinstance(study, optuna.Study)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * TRIALS
    sampled = sorted(t.params["optim.d.lr"] for t in study.trials)
    assert all(math.isclose(a, b, rel_tol=1e-5) for a, b in zip(sampled, sorted(lrs))), (sampled, lrs)

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    record = json.loads((folder / "record.json").read_text())
    parent = client.get_run(record["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["search.algorithm"] == "optuna"
    assert parent.data.metrics["campaign/trials"] == TRIALS
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == TRIALS and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["zerosum.trial_id"] for c in children} == {r["trial_id"] for r in rows}

    version = client.get_model_version_by_alias("ring8-optuna", "champion")
    best = max(float(r["objective"]) for r in rows)
    assert version.tags["zerosum.campaign"] == "optuna"
    assert version.tags["zerosum.trial_id"] in {r["trial_id"] for r in rows if float(r["objective"]) == best}
    assert float(version.tags["zerosum.objective"]) == pytest.approx(best, rel=1e-5)
