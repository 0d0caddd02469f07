"""Tune campaigns without Ray: spec parsing and its errors, trial jobs, PBT's lr
re-application after a restore, objective and ledger, table and champion."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from zerosum.config import job_to_yaml, load_job
from zerosum.errors import ConfigError
from zerosum.train import checkpoint as ckpt
from zerosum.train.state import build_worker_state, restore_worker_state
from zerosum.tune.campaign import campaign_cpu_problem, describe_campaign, load_campaign, trials_at_once
from zerosum.tune.champion import find_champion
from zerosum.tune.report import COMPLETED, STOPPED, best_so_far, read_ledgers, trial_row, trials_csv
from zerosum.tune.schema import LEDGER_FOLDER, OBJECTIVE_KEY, REPORT_FILE
from zerosum_testing import JOBS, LocalSession

BASE = {
    "name": "ring8-small",
    "data": {"name": "ring8", "num_samples": 1000},
    "model": {"g": {"arch": "mlp", "z_dim": 4, "hidden": [16], "output": "identity", "batch_norm": False},
              "d": {"arch": "mlp", "hidden": [16], "batch_norm": False}},
    "schedule": {"batch_size": 32, "max_rounds": 100},
    "eval": {"every_rounds": 10, "num_samples": 200, "metrics": ["modes"]},
}
CAMPAIGN = {
    "base": "base.yaml",
    "search_space": {"schedule.d_steps": {"choice": [1, 2, 3, 5]},
                     "optim.d.lr": {"loguniform": [1.0e-5, 1.0e-2]},
                     "optim.g.lr": {"loguniform": [1.0e-5, 1.0e-2]}},
    "objective": {"weights": {"eval/modes": 1.0, "eval/hq_fraction": 1.0}, "mode": "max"},
    "scheduler": {"name": "asha", "grace_rounds": 20},
    "num_samples": 6,
    "max_concurrent_trials": 2,
}


def write_campaign(tmp_path: Path, campaign: dict | None = None, base: dict | None = None, **top) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base or BASE))
    path = tmp_path / "tune-small.yaml"
    path.write_text(yaml.safe_dump({"campaign": campaign or CAMPAIGN, **top}, sort_keys=False))
    return path


def with_changes(**changes) -> dict:
    return {**CAMPAIGN, **changes}


# --------------------------------------------------------------------------- parsing


def test_campaign_loads_with_its_base_and_counts_trials(tmp_path):
    campaign = load_campaign(write_campaign(tmp_path))
    assert campaign.name == "tune-small" and campaign.register_as == "tune-small"
    assert campaign.base.name == "ring8-small" and campaign.total_rounds == 100
    assert campaign.targets["optim.d.lr"] == [["optim", "d", "lr"]]
    assert campaign.trial_count() == 6
    text = describe_campaign(campaign)
    assert "schedule.d_steps  choice [1, 2, 3, 5]" in text and "trials:      6, at most 2 at a time" in text


def test_other_top_level_keys_and_sets_override_the_base(tmp_path):
    path = write_campaign(tmp_path, schedule={"max_rounds": 60})
    campaign = load_campaign(path, ["campaign.num_samples=3", "optim.g.betas=[0.0, 0.9]",
                                    "campaign.search_space.schedule.d_steps={grid: [1, 2]}"])
    assert campaign.total_rounds == 60 and campaign.spec.num_samples == 3 and campaign.trial_count() == 6
    assert campaign.base.optim.g.betas == (0.0, 0.9) and campaign.base.schedule.batch_size == 32


def test_a_file_without_base_is_its_own_base_job(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump({"campaign": {k: v for k, v in CAMPAIGN.items() if k != "base"}, **BASE}))
    assert load_campaign(path).base.name == "ring8-small"
    assert load_job(path).name == "ring8-small"  # `zerosum run` ignores the campaign section


def test_wildcard_ties_g_and_d_to_one_value(tmp_path):
    space = {"optim.*.betas": {"choice": [[0.5, 0.999], [0.0, 0.9]]}, "optim.d.lr": {"uniform": [1e-4, 1e-3]}}
    campaign = load_campaign(write_campaign(tmp_path, with_changes(search_space=space)))
    assert campaign.targets["optim.*.betas"] == [["optim", "g", "betas"], ["optim", "d", "betas"]]
    job = campaign.trial_spec({"optim.*.betas": [0.0, 0.9], "optim.d.lr": 5e-4})
    assert job.optim.g.betas == job.optim.d.betas == (0.0, 0.9)
    assert job.optim.d.lr == 5e-4


def test_grid_search_counts_the_grid_times_num_samples(tmp_path):
    space = {"schedule.d_steps": {"grid": [1, 2]}, "loss.name": {"choice": ["hinge", "nonsaturating", "lsgan"]}}
    campaign = load_campaign(write_campaign(tmp_path, with_changes(
        search_space=space, num_samples=2, search={"algorithm": "grid"})))
    assert campaign.grid_paths() == ["schedule.d_steps", "loss.name"]
    assert campaign.trial_count() == 12


def test_every_campaign_in_jobs_validates():
    paths = [p for p in sorted(JOBS.glob("*.yaml")) if "campaign" in yaml.safe_load(p.read_text())]
    assert {p.name for p in paths} >= {"tune-ring8-dg-ratio.yaml", "tune-mnist-dcgan.yaml",
                                       "pbt-mnist-dcgan.yaml", "tune-mnist-seed.yaml", "tune-mnist-superres.yaml"}
    for path in paths:
        campaign = load_campaign(path, check_paths=False)
        assert campaign.trial_count() >= 4, path


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"search_space": {"optim.d.lrr": {"choice": [1e-3]}}},
         ["campaign.search_space.optim.d.lrr", "no such field", "fields under optim.d", "lr"]),
        ({"search_space": {"optim.d.lr.max": {"choice": [1e-3]}}}, ["optim.d.lr is a value"]),
        ({"search_space": {"schedule.d_steps": {"choice": [0, 1]}}},
         ["campaign.search_space.schedule.d_steps", "rejects 0", "greater than 0"]),
        ({"search_space": {"optim.d.lr": {"uniform": [-1.0, 1.0]}}}, ["optim.d.lr", "rejects -1.0"]),
        ({"search_space": {"loss.name": {"choice": ["hinge", "wasserstein"]}}}, ["loss.name", "'wasserstein'"]),
        ({"search_space": {"optim.d.lr": {"loguniform": [0.0, 1.0]}}}, ["optim.d.lr", "low must be > 0"]),
        ({"search_space": {"optim.d.lr": {"uniform": [1e-3, 1e-4]}}}, ["low must be < high"]),
        ({"search_space": {"schedule.d_steps": {"randint": [1.5, 4]}}}, ["randint", "integers"]),
        ({"search_space": {"schedule.d_steps": {"choice": []}}}, ["choice", "at least one value"]),
        ({"search_space": {"schedule.d_steps": {"normal": [1, 2]}}}, ["kind", "'choice'"]),
        ({"search_space": {"schedule.d_steps": {"choice": [1], "grid": [2]}}}, ["expected one of"]),
        ({"search_space": {}}, ["search_space", "at least 1"]),
        ({"objective": {"mode": "max"}}, ["exactly one of objective.metric and objective.weights"]),
        ({"objective": {"metric": "eval/fid", "mode": "min"}}, ["campaign.objective", "eval/fid", "'fid'"]),
        ({"objective": {"metric": "eval/modes", "mode": "best"}}, ["objective.mode"]),
        ({"scheduler": {"name": "hyperband"}}, ["scheduler"]),
        ({"scheduler": {"name": "asha", "grace_rounds": 500}}, ["grace_rounds", "beyond the last round"]),
        ({"scheduler": {"name": "pbt", "perturbation_interval_rounds": 10}, "max_concurrent_trials": None,
          "trial": {"mode": "ray-train", "num_workers": 2}}, ["campaign.trial.mode", "single"]),
        ({"scheduler": {"name": "pbt", "perturbation_interval_rounds": 10, "mutate": ["optim.g.betas"]},
          "max_concurrent_trials": None}, ["campaign.scheduler.mutate", "optim.g.betas"]),
        ({"scheduler": {"name": "pbt", "perturbation_interval_rounds": 10}}, ["max_concurrent_trials", "population"]),
        ({"search": {"algorithm": "grid"}}, ["search.algorithm 'grid'", "loguniform"]),
        ({"search": {"algorithm": "annealing"}}, ["search.algorithm"]),
        ({"num_samples": 0}, ["num_samples"]),
        ({"trials": 4}, ["campaign.trials", "unknown field", "num_samples"]),
        ({"base": "missing.yaml"}, ["campaign.base", "missing.yaml"]),
    ],
)
def test_bad_campaign_is_a_config_error_naming_the_field(tmp_path, changes, expected):
    with pytest.raises(ConfigError) as err:
        load_campaign(write_campaign(tmp_path, with_changes(**changes)))
    for text in expected:
        assert text in str(err.value), (text, str(err.value))


def test_schedulers_need_intermediate_evaluations(tmp_path):
    base = {**BASE, "eval": {"metrics": ["modes"]}}
    with pytest.raises(ConfigError, match="eval.every_rounds"):
        load_campaign(write_campaign(tmp_path, base=base))


def test_optuna_is_an_optional_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(ConfigError, match=r"zerosum\[tune-optuna\]"):
        load_campaign(write_campaign(tmp_path, with_changes(search={"algorithm": "optuna"})))


def test_a_file_without_campaign_section_is_refused(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(BASE))
    with pytest.raises(ConfigError, match="top-level 'campaign:'"):
        load_campaign(path)


# --------------------------------------------------------------------------- trials


def test_trial_spec_checkpoints_at_every_evaluation(tmp_path):
    campaign = load_campaign(write_campaign(tmp_path))
    single = campaign.trial_spec({"schedule.d_steps": 3})
    assert single.schedule.d_steps == 3 and single.checkpoint.every_rounds == 10
    assert single.scaling.num_workers == 1 and campaign.base.schedule.d_steps == 1
    trial = {"mode": "ray-train", "num_workers": 2}
    train = load_campaign(write_campaign(tmp_path, with_changes(trial=trial, resources={"cpus": 0.5, "gpus": 1})))
    spec = train.trial_spec({})
    assert (spec.scaling.num_workers, spec.scaling.cpus_per_worker, spec.scaling.use_gpu) == (2, 0.5, True)
    assert spec.checkpoint.keep is None


# An MNIST job streamed through Ray Data (data.streaming), for the spare-CPU check; the check
# reads no pixel, so the root need not exist.
STREAMED_BASE = {
    "name": "mnist-streamed",
    "data": {"name": "mnist", "root": "/nonexistent", "streaming": True},
    "model": {"g": {"arch": "dcgan", "z_dim": 16, "base_channels": 8}, "d": {"arch": "dcgan", "base_channels": 8}},
    "schedule": {"batch_size": 32, "max_rounds": 20},
    "eval": {"every_rounds": 10, "num_samples": 128, "metrics": ["mmd"], "features": "identity"},
}
STREAMED_CAMPAIGN = {"base": "base.yaml", "search_space": {"optim.d.lr": {"loguniform": [1.0e-5, 1.0e-2]}},
                     "objective": {"metric": "eval/mmd2", "mode": "min"}, "num_samples": 4}


def streamed_campaign(tmp_path, **changes):
    return load_campaign(write_campaign(tmp_path, {**STREAMED_CAMPAIGN, **changes}, base=STREAMED_BASE),
                         check_paths=False)


def test_a_streamed_campaign_leaves_ray_data_a_cpu(tmp_path):
    """Trials at once x CPUs each, against the cluster's CPUs less the one Ray Data needs."""
    path = tmp_path / "tune-small.yaml"
    # 4 single-process trials of 1 CPU and no limit: as many as fit run at once.
    campaign = streamed_campaign(tmp_path)
    assert trials_at_once(campaign, {"CPU": 2}) == (2, "2 that fit")
    assert campaign_cpu_problem(campaign, {"CPU": 5}) is None  # 4 trials hold 4 of 5
    assert campaign_cpu_problem(campaign, {"CPU": 2}) == (
        f"{path}: data.streaming: Ray Data needs a CPU the trials do not hold; the cluster has 2, 2 trials at a "
        "time take 2 (2 that fit x campaign.resources.cpus 1). Set campaign.max_concurrent_trials to 1, or lower "
        "campaign.resources.cpus, or add CPUs")
    # The limit the message asked for leaves the CPU.
    assert campaign_cpu_problem(streamed_campaign(tmp_path, max_concurrent_trials=1), {"CPU": 2}) is None
    # Ray counts in ten-thousandths: 20 trials of 0.1 CPU fill 2 CPUs; 10 leave one.
    tenths = streamed_campaign(tmp_path, num_samples=30, resources={"cpus": 0.1})
    assert trials_at_once(tenths, {"CPU": 2}) == (20, "20 that fit")
    assert "Set campaign.max_concurrent_trials to 10," in campaign_cpu_problem(tenths, {"CPU": 2})
    assert campaign_cpu_problem(streamed_campaign(tmp_path, num_samples=30, resources={"cpus": 0.1},
                                                  max_concurrent_trials=10), {"CPU": 2}) is None
    # One GPU each on a 1-GPU node: one trial at a time, whatever the CPUs.
    gpus = streamed_campaign(tmp_path, resources={"cpus": 1, "gpus": 1})
    assert trials_at_once(gpus, {"CPU": 2, "GPU": 1}) == (1, "1 that fit")
    assert campaign_cpu_problem(gpus, {"CPU": 2, "GPU": 1}) is None
    # ray-train: each trial's workers hold num_workers x cpus; its own process none.
    ray_train = streamed_campaign(tmp_path, trial={"mode": "ray-train", "num_workers": 2}, max_concurrent_trials=1)
    assert trials_at_once(ray_train, {"CPU": 3}) == (1, "campaign.max_concurrent_trials 1")
    assert campaign_cpu_problem(ray_train, {"CPU": 3}) is None
    assert campaign_cpu_problem(ray_train, {"CPU": 2}) == (
        f"{path}: data.streaming: Ray Data needs a CPU the trials do not hold; the cluster has 2, 1 trial at a time "
        "takes 2 (campaign.max_concurrent_trials 1 x campaign.trial.num_workers 2 x campaign.resources.cpus 1). "
        "Lower campaign.trial.num_workers or campaign.resources.cpus, or add CPUs")
    # PBT runs its population at once (4 of 1 CPU on 4), so the population is what must shrink.
    pbt = streamed_campaign(tmp_path, scheduler={"name": "pbt", "perturbation_interval_rounds": 10})
    assert "Shrink PBT's population to 3 trials (campaign.num_samples)" in campaign_cpu_problem(pbt, {"CPU": 4})
    # Nothing streamed, or streaming only where the search space turns it on.
    assert campaign_cpu_problem(load_campaign(write_campaign(tmp_path)), {"CPU": 1}) is None
    searched = {"data.streaming": {"choice": [False, True]}}
    unstreamed = {**STREAMED_BASE, "data": {**STREAMED_BASE["data"], "streaming": False}}
    campaign = load_campaign(write_campaign(tmp_path, {**STREAMED_CAMPAIGN, "search_space": searched},
                                            base=unstreamed), check_paths=False)
    assert campaign_cpu_problem(campaign, {"CPU": 2}) is not None


def test_a_campaign_without_a_cpu_for_ray_data_ends_its_parent_run_failed(tmp_path, monkeypatch,
                                                                            empty_store_in_tmp_path):
    """The refusal comes after Ray is up and the parent run has started (what `zerosum run`
    does for a run): the parent run is not left RUNNING."""
    import ray
    from mlflow.tracking import MlflowClient

    import zerosum.runtime
    from zerosum.tune.driver import run_campaign

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{empty_store_in_tmp_path}")
    monkeypatch.setattr(zerosum.runtime, "init_ray", lambda **kwargs: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    with pytest.raises(ConfigError, match=r"data.streaming: Ray Data needs a CPU the trials do not hold"):
        run_campaign(streamed_campaign(tmp_path))
    client = MlflowClient()
    (parent,) = client.search_runs([client.get_experiment_by_name("mnist-streamed").experiment_id])
    assert parent.info.status == "FAILED" and parent.data.tags["zerosum.kind"] == "campaign"


def test_pbt_restore_keeps_optimizer_state_but_applies_the_trials_new_lrs(tmp_path):
    """PBT exploits: trial B restores trial A's checkpoint (saved with A's lrs) under a
    mutated config; the optimizer state comes back, the lrs are B's."""
    spec_a = load_job(write_campaign(tmp_path).parent / "base.yaml", ["optim.d.lr=1e-3", "optim.g.lr=2e-3"])
    state_a = build_worker_state(spec_a, (2,), 0, LocalSession())
    for optimizer, model in ((state_a.opt_d, state_a.discriminator), (state_a.opt_g, state_a.generator)):
        model(torch.randn(4, 2 if model is state_a.discriminator else 4)).sum().backward()
        optimizer.step()
    state_a.rounds_done = 30
    ckpt.write_checkpoint(tmp_path / "ckpt", 0, state_a.model_state(), ckpt.rng_state(state_a.noise_rng),
                          job_to_yaml(spec_a))

    spec_b = spec_a.model_copy(update={"optim": spec_a.optim.model_copy(update={
        "d": spec_a.optim.d.model_copy(update={"lr": 1.2e-3}),
        "g": spec_a.optim.g.model_copy(update={"lr": 1.6e-3})})})
    state_b = build_worker_state(spec_b, (2,), 0, LocalSession())
    restore_worker_state(state_b, spec_b, LocalSession(resume_from=tmp_path / "ckpt"))

    assert state_b.rounds_done == 30
    assert [g["lr"] for g in state_b.opt_d.param_groups] == [1.2e-3]
    assert [g["lr"] for g in state_b.opt_g.param_groups] == [1.6e-3]
    saved = state_a.opt_d.state_dict()["state"][0]["exp_avg"]
    torch.testing.assert_close(state_b.opt_d.state_dict()["state"][0]["exp_avg"], saved)
    for p_a, p_b in zip(state_a.generator.parameters(), state_b.generator.parameters()):
        torch.testing.assert_close(p_a, p_b)


def test_pbt_restore_applies_the_trials_betas_and_weight_decay(tmp_path):
    """An exploit that changes betas (and weight decay) leaves the optimiser with the
    trial's values, not the source trial's that came back with its state_dict."""
    spec_a = load_job(write_campaign(tmp_path).parent / "base.yaml", ["optim.d.betas=[0.5, 0.999]", "optim.g.betas=[0.5, 0.999]"])
    state_a = build_worker_state(spec_a, (2,), 0, LocalSession())
    ckpt.write_checkpoint(tmp_path / "ckpt", 0, state_a.model_state(), ckpt.rng_state(state_a.noise_rng),
                          job_to_yaml(spec_a))
    spec_b = load_job(write_campaign(tmp_path).parent / "base.yaml",
                      ["optim.d.betas=[0.0, 0.9]", "optim.g.betas=[0.2, 0.95]", "optim.d.weight_decay=1e-4"])
    state_b = build_worker_state(spec_b, (2,), 0, LocalSession())
    restore_worker_state(state_b, spec_b, LocalSession(resume_from=tmp_path / "ckpt"))
    assert [tuple(g["betas"]) for g in state_b.opt_d.param_groups] == [(0.0, 0.9)]
    assert [tuple(g["betas"]) for g in state_b.opt_g.param_groups] == [(0.2, 0.95)]
    assert [g["weight_decay"] for g in state_b.opt_d.param_groups] == [1e-4]


def test_pbt_refuses_to_mutate_what_a_checkpoint_cannot_absorb(tmp_path):
    space = {"optim.d.lr": {"loguniform": [1e-4, 1e-2]}, "model.g.hidden": {"choice": [[16], [32]]}}
    pbt = {"name": "pbt", "perturbation_interval_rounds": 10}
    changes = {"search_space": space, "max_concurrent_trials": None}
    with pytest.raises(ConfigError, match=r"campaign.search_space.model.g.hidden: PBT cannot mutate model.g.hidden"):
        load_campaign(write_campaign(tmp_path, with_changes(**changes, scheduler=pbt)))
    # Listed outside scheduler.mutate, the shape is a fixed per-trial choice and PBT is fine.
    ok = load_campaign(write_campaign(tmp_path, with_changes(**changes, scheduler={**pbt, "mutate": ["optim.d.lr"]})))
    assert ok.mutated_paths() == ["optim.d.lr"]


# --------------------------------------------------------------------------- objective and ledger


def reporter(tmp_path=None, mode="max"):
    from zerosum.tune.trial import ObjectiveReporter

    ledger = None if tmp_path is None else str(tmp_path / LEDGER_FOLDER / "t1.jsonl")
    return ObjectiveReporter("t1", {"eval/modes": 1.0, "eval/hq_fraction": 1.0}, mode,
                             {"optim.d.lr": 1e-3, "optim.*.betas": [0.5, 0.9], "optim.*.momentum": 0.5}, ledger)


def test_objective_is_the_weighted_sum_and_joins_the_ledger(tmp_path):
    completed = reporter(tmp_path).complete({"eval/modes": 7.0, "eval/hq_fraction": 0.5, "round": 40})
    assert completed[OBJECTIVE_KEY] == 7.5 and completed["hp/optim.d.lr"] == 1e-3
    # Lists are no metrics; '*' is no character MLflow allows in a metric name.
    assert "hp/optim.*.betas" not in completed and completed["hp/optim.all.momentum"] == 0.5
    (entry,) = read_ledgers(tmp_path)["t1"]
    assert entry["round"] == 40 and entry[OBJECTIVE_KEY] == 7.5 and entry["params"]["optim.d.lr"] == 1e-3


def test_a_diverged_trial_ranks_last_and_a_missing_metric_is_named():
    assert reporter(mode="max").complete({"eval/modes": math.nan, "eval/hq_fraction": 0.0})[OBJECTIVE_KEY] == -math.inf
    assert reporter(mode="min").complete({"eval/modes": math.nan, "eval/hq_fraction": 0.0})[OBJECTIVE_KEY] == math.inf
    with pytest.raises(Exception, match="eval/hq_fraction"):
        reporter().complete({"eval/modes": 3.0, "loss/d": 0.7})


def ledger_entry(trial_id, round_index, objective, time_s, lr=1e-3):
    return {"trial_id": trial_id, "time": time_s, "round": round_index, OBJECTIVE_KEY: objective,
            "metrics": {"eval/modes": objective // 1, "loss/d": 0.7}, "params": {"optim.d.lr": lr}}


def test_rows_judge_each_trial_at_its_best_report(tmp_path):
    campaign = load_campaign(write_campaign(tmp_path))
    done = [ledger_entry("a", 10 * i, score, 100 + i) for i, score in enumerate([1.0, 3.5, 2.0, 2.5], 1)]
    done += [ledger_entry("a", r, 2.0, 110 + r) for r in range(50, 101, 10)]
    row = trial_row(campaign, "a", done, None)
    assert (row.status, row.best_round, row.best_objective, row.rounds) == (COMPLETED, 20, 3.5, 100)
    assert row.metrics == {"eval/modes": 3.0}
    stopped = trial_row(campaign, "b", [ledger_entry("b", 20, 0.5, 130)], None)
    assert stopped.status == STOPPED
    table = trials_csv(campaign, [row, stopped]).splitlines()
    assert table[0].startswith("trial_id,status,objective,best_round,rounds,wall_s,schedule.d_steps,optim.d.lr")
    assert table[1].startswith("a,completed,3.5,20,100")
    times, values = best_so_far([row, stopped], "max", start_time=100)
    assert values[-1] == 3.5 and times == sorted(times)


def test_champion_is_the_best_stamped_checkpoint_on_disk(tmp_path):
    for trial, folder, objective, round_index in (("a", "checkpoint_000001", 2.0, 20), ("b", "checkpoint_000000", 5.5, 10),
                                                  ("b", "checkpoint_000003", 4.0, 40)):
        path = tmp_path / f"trial_{trial}" / folder
        path.mkdir(parents=True)
        (path / REPORT_FILE).write_text(json.dumps(ledger_entry(trial, round_index, objective, 0)))
    champion = find_champion(tmp_path, "max")
    assert (champion.trial_id, champion.round, champion.objective) == ("b", 10, 5.5)
    assert champion.checkpoint_path == tmp_path / "trial_b" / "checkpoint_000000"
    assert find_champion(tmp_path, "min").trial_id == "a"


def test_pbt_explore_stays_inside_the_search_bounds():
    from zerosum.tune.schedulers import ClipToBounds

    clip = ClipToBounds({"optim.d.lr": (1e-4, 1e-2), "schedule.d_steps": (1, 4)})
    assert clip({"optim.d.lr": 1.2e-2, "schedule.d_steps": 6, "other": 3}) == {
        "optim.d.lr": 1e-2, "schedule.d_steps": 4, "other": 3}


def test_progress_counts_running_done_stopped_and_errored():
    from zerosum.tune.progress import CampaignProgress

    progress = CampaignProgress(total_trials=5, total_rounds=100, mode="max")
    trials = [SimpleNamespace(status=s, last_result={"round": r}) for s, r in
              (("RUNNING", 10), ("TERMINATED", 100), ("TERMINATED", 40), ("ERROR", 5), ("PENDING", 0))]
    assert progress.counts(trials) == {"running": 1, "done": 1, "stopped": 1, "errored": 1}
    progress.on_trial_result(0, trials, SimpleNamespace(trial_id="x"), {OBJECTIVE_KEY: 4.0, "round": 10})
    progress.on_trial_result(0, trials, SimpleNamespace(trial_id="y"), {OBJECTIVE_KEY: 3.0, "round": 20})
    assert progress.best == (4.0, "x", 10)
    assert "_progress" in progress.__getstate__()
