"""The driver of `zerosum tune`: campaign folder, parent MLflow run, Tuner, and the end.

A campaign folder is `<storage>/<campaign>-<time>/`: Tune's experiment folder, plus
`campaign.json` with the parent run id, so that `zerosum tune SPEC --resume` restores
the Tuner (`Tuner.restore`) and keeps logging into the same parent run. At the end
the parent run gets trials.csv and plots, and the best trial's generator is
registered under the campaign's model name with the alias `champion`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zerosum import tracking
from zerosum.campaign_report import (
    ERRORED, PLOTS, STOPPED, Champion, TrialRow, find_champion, plot_best_so_far, read_ledgers, trial_row, trials_csv,
)
from zerosum.campaign_spec import OBJECTIVE_KEY, Campaign, DomainSpec, PbtSpec, AshaSpec
from zerosum.config import flatten, job_to_dict, validate_job
from zerosum.errors import ZerosumError
from zerosum.train import checkpoint as ckpt

log = logging.getLogger(__name__)

RECORD = "campaign.json"
TRIAL_DRIVER_MEMORY_BYTES = 256 * 2**20


@dataclass
class CampaignResult:
    folder: Path
    parent_run_id: str
    rows: list[TrialRow]
    champion: Champion | None
    model_uri: str | None
    exploits: int
    wall_s: float


# --------------------------------------------------------------------------- folder and parent run


def campaign_yaml(campaign: Campaign) -> str:
    """A self-contained campaign file: the resolved campaign section over the resolved base job."""
    section = campaign.spec.model_dump(mode="json", exclude_none=True)
    section.update(name=campaign.name, search_space={key: {domain.kind: domain.values}
                                                     for key, domain in campaign.spec.search_space.items()})
    section.pop("base", None)
    return yaml.safe_dump({"campaign": section, **job_to_dict(campaign.base)}, sort_keys=False)


def parent_params(campaign: Campaign) -> dict[str, Any]:
    spec = campaign.spec
    params = {f"search.{key.replace('*', 'all')}": domain.describe() for key, domain in spec.search_space.items()}
    params.update({"objective": spec.objective.describe(), "scheduler": spec.scheduler.name,
                   "search.algorithm": spec.search.algorithm, "num_samples": spec.num_samples,
                   "trials": campaign.trial_count(), "max_concurrent_trials": spec.max_concurrent_trials,
                   "trial.mode": spec.trial.mode})
    params.update({f"base.{k}": v for k, v in flatten(job_to_dict(campaign.base)).items()})
    return params


def latest_folder(campaign: Campaign) -> Path:
    """The newest folder of this campaign that has a record, for --resume."""
    root = campaign.storage_path
    candidates = [p for p in root.glob(f"{campaign.name}-*") if (p / RECORD).is_file()
                  and json.loads((p / RECORD).read_text()).get("campaign") == campaign.name]
    if not candidates:
        raise ZerosumError(f"--resume: no earlier campaign '{campaign.name}' under {root}")
    return max(candidates, key=lambda p: (p / RECORD).stat().st_mtime)


def prepare_campaign(campaign: Campaign, resume: bool, tracking_uri: str) -> tuple[Path, dict[str, Any]]:
    """Create (or reopen) the campaign folder and its parent MLflow run."""
    if resume:
        folder = latest_folder(campaign)
        record = json.loads((folder / RECORD).read_text())
        if "finished_at" in record:
            raise ZerosumError(f"--resume: campaign '{campaign.name}' in {folder} has finished; its results are "
                               f"in {folder / 'trials.csv'} and MLflow run {record['parent_run_id']}")
        tracking.reopen_run(record["tracking_uri"], record["parent_run_id"])
        record["resumes"] = record.get("resumes", 0) + 1
        ckpt.atomic_write_text(json.dumps(record, indent=2), folder / RECORD)
        tracking.set_tags(record["tracking_uri"], record["parent_run_id"], {"zerosum.resumes": record["resumes"]})
        return folder, record
    folder = campaign.storage_path / f"{campaign.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=False)
    text = campaign_yaml(campaign)
    ckpt.atomic_write_text(text, folder / "campaign.yaml")
    tags = {"zerosum.campaign": campaign.name, "zerosum.campaign_dir": str(folder), "zerosum.kind": "campaign"}
    run_id = tracking.start_run(tracking_uri, campaign.base.experiment_name, folder.name, parent_params(campaign),
                                text, tags=tags)
    record = {"campaign": campaign.name, "parent_run_id": run_id, "tracking_uri": tracking_uri,
              "experiment": campaign.base.experiment_name, "started_at": time.time()}
    ckpt.atomic_write_text(json.dumps(record, indent=2), folder / RECORD)
    return folder, record


# --------------------------------------------------------------------------- Tune objects


def tune_domain(domain: DomainSpec, as_grid: bool):
    from ray import tune

    if domain.kind == "grid" or (as_grid and domain.kind == "choice"):
        return tune.grid_search(list(domain.values))
    build = {"choice": lambda v: tune.choice(list(v)), "uniform": lambda v: tune.uniform(*v),
             "loguniform": lambda v: tune.loguniform(*v), "randint": lambda v: tune.randint(*v)}
    return build[domain.kind](domain.values)


def param_space(campaign: Campaign) -> dict[str, Any]:
    as_grid = campaign.spec.search.algorithm == "grid"
    return {key: tune_domain(domain, as_grid) for key, domain in campaign.spec.search_space.items()}


class ClipToBounds:
    """PBT's explore step multiplies by 0.8 or 1.2; keep the result inside the search bounds."""

    def __init__(self, bounds: dict[str, tuple[float, float]]):
        self.bounds = bounds

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for key, (low, high) in self.bounds.items():
            if key in config:
                config[key] = type(config[key])(min(max(config[key], low), high))
        return config


def build_scheduler(campaign: Campaign):
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    scheduler, space = campaign.spec.scheduler, campaign.spec.search_space
    if isinstance(scheduler, AshaSpec):
        return ASHAScheduler(time_attr="round", max_t=scheduler.max_rounds or campaign.total_rounds,
                             grace_period=scheduler.grace_rounds or campaign.base.eval.every_rounds,
                             reduction_factor=scheduler.reduction_factor, brackets=scheduler.brackets)
    if not isinstance(scheduler, PbtSpec):
        return None
    mutations, bounds = {}, {}
    for key in campaign.mutated_paths():
        domain = space[key]
        mutations[key] = list(domain.values) if domain.kind in ("choice", "grid") else tune_domain(domain, False)
        if domain.kind in ("uniform", "loguniform"):
            bounds[key] = (domain.values[0], domain.values[1])
        elif domain.kind == "randint":
            bounds[key] = (domain.values[0], domain.values[1] - 1)
    return PopulationBasedTraining(
        time_attr="round", perturbation_interval=scheduler.perturbation_interval_rounds,
        burn_in_period=scheduler.burn_in_rounds, hyperparam_mutations=mutations,
        quantile_fraction=scheduler.quantile_fraction, resample_probability=scheduler.resample_probability,
        custom_explore_fn=ClipToBounds(bounds), synch=scheduler.synch)


def build_searcher(campaign: Campaign):
    """Random/grid: Tune's variant generator (it limits concurrency itself); Optuna TPE:
    wrapped in a ConcurrencyLimiter."""
    search, limit = campaign.spec.search, campaign.spec.max_concurrent_trials
    if search.algorithm == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        searcher = OptunaSearch(seed=search.seed)
        return ConcurrencyLimiter(searcher, max_concurrent=limit) if limit else searcher
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=limit or 0, random_state=search.seed)


def trial_dirname(trial) -> str:
    """Short trial folders (Tune's default repeats every param in the name)."""
    return f"trial_{trial.trial_id}"


def trial_trainable(campaign: Campaign, folder: Path, record: dict[str, Any]):
    """run_trial with the campaign's shared context and per-trial resources."""
    from ray import tune

    from zerosum.campaign_trial import TrialContext, run_trial

    spec = campaign.spec
    context = TrialContext(campaign.name, str(folder), job_to_dict(campaign.base), campaign.targets,
                           spec.objective.terms(), spec.objective.mode, spec.trial, spec.resources,
                           record["tracking_uri"], record["experiment"], record["parent_run_id"])
    if spec.trial.mode == "single":
        resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    else:
        # The trial only drives a TorchTrainer, whose workers hold the CPUs and GPUs; Tune
        # refuses an empty request, and what the driver process does need is memory.
        resources = {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY_BYTES}
    return tune.with_resources(tune.with_parameters(run_trial, context=context), resources)


def build_tuner(campaign: Campaign, folder: Path, record: dict[str, Any], resume: bool):
    from ray import tune

    from zerosum.campaign_progress import CampaignProgress

    trainable = trial_trainable(campaign, folder, record)
    if resume and tune.Tuner.can_restore(str(folder)):
        return tune.Tuner.restore(str(folder), trainable, resume_unfinished=True, resume_errored=True)
    spec = campaign.spec
    # Ray 2.60's checkpoint pruning and PBT's exploit trip over each other (a pruned
    # folder is deleted twice, and the failed bookkeeping reuses folder names), so PBT
    # campaigns keep every checkpoint.
    keep = None if isinstance(spec.scheduler, PbtSpec) else campaign.base.checkpoint.keep
    progress = CampaignProgress(campaign.trial_count(), campaign.total_rounds, spec.objective.mode)
    return tune.Tuner(
        trainable, param_space=param_space(campaign),
        tune_config=tune.TuneConfig(metric=OBJECTIVE_KEY, mode=spec.objective.mode,
                                    scheduler=build_scheduler(campaign), search_alg=build_searcher(campaign),
                                    num_samples=spec.num_samples, trial_dirname_creator=trial_dirname,
                                    # A new trial (or a PBT restart) reuses a finished trial's process:
                                    # no new interpreter, no re-import of torch. Not for Ray Train
                                    # trials: fit() outlives Tune's 2 s wait and the reuse then hangs.
                                    reuse_actors=spec.trial.mode == "single"),
        run_config=tune.RunConfig(
            name=folder.name, storage_path=str(folder.parent), verbose=0, callbacks=[progress],
            failure_config=tune.FailureConfig(max_failures=max(0, campaign.base.scaling.max_failures)),
            # PBT clones the latest checkpoint, which Tune always keeps; the best ones by
            # objective stay for the champion.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=None if keep is None else max(keep, 3),
                checkpoint_score_attribute=OBJECTIVE_KEY, checkpoint_score_order=spec.objective.mode)),
    )


# --------------------------------------------------------------------------- run and finish


def run_campaign(campaign: Campaign, resume: bool = False) -> CampaignResult:
    """Run (or resume) the campaign on Ray Tune and record it in MLflow."""
    from zerosum.featurizer import prepare_eval_spec
    from zerosum.train.runner import init_ray

    # As `zerosum run` does: classifier features are trained once, here, not in every trial.
    campaign.base = prepare_eval_spec(campaign.base)
    tracking_uri = tracking.resolve_tracking_uri()
    folder, record = prepare_campaign(campaign, resume, tracking_uri)
    init_ray(with_dashboard=campaign.spec.trial.mode == "ray-train")
    tuner = build_tuner(campaign, folder, record, resume)
    try:
        results = tuner.fit()
    except Exception as err:
        tracking.end_run(record["tracking_uri"], record["parent_run_id"], "FAILED")
        raise ZerosumError(f"campaign failed: {err}\nresume with: zerosum tune SPEC --resume") from err
    unfinished = len(results) - results.num_terminated - results.num_errors
    if unfinished:
        # Ctrl-C: Tune saved its state and returned early.
        tracking.end_run(record["tracking_uri"], record["parent_run_id"], "KILLED")
        raise ZerosumError(f"campaign interrupted with {unfinished} trials unfinished ({folder})\n"
                           f"resume with: zerosum tune SPEC --resume")
    return finish_campaign(campaign, folder, record, results)


def finish_campaign(campaign: Campaign, folder: Path, record: dict[str, Any], results) -> CampaignResult:
    """Close the trial runs; log trials.csv, plots and the champion to the parent run."""
    uri, parent = record["tracking_uri"], record["parent_run_id"]
    rows = collect_rows(campaign, folder, results)
    if rows and all(row.status == ERRORED for row in rows):
        tracking.end_run(uri, parent, "FAILED")
        raise ZerosumError(f"every trial failed; the first: {rows[0].error}")
    close_trial_runs(uri, parent, rows)
    log_report(campaign, folder, record, rows)
    champion = find_champion(folder, campaign.spec.objective.mode)
    model_uri = None
    if champion is not None:
        champion.run_id = next((r.run_id for r in rows if r.trial_id == champion.trial_id), None)
        model_uri = register_champion(campaign, uri, parent, champion)
    exploits = count_exploits(folder)
    summary = {"campaign/trials": len(rows), "campaign/stopped_early": sum(r.status == STOPPED for r in rows),
               "campaign/errored": sum(r.status == ERRORED for r in rows), "campaign/exploits": exploits,
               "campaign/wall_s": time.time() - record["started_at"]}
    if champion is not None:
        summary["campaign/best_objective"] = champion.objective
    tracking.log_metrics_at(uri, parent, summary, 0)
    tracking.end_run(uri, parent)
    record["finished_at"] = time.time()
    ckpt.atomic_write_text(json.dumps(record, indent=2), folder / RECORD)
    return CampaignResult(folder, parent, rows, champion, model_uri, exploits, summary["campaign/wall_s"])


def collect_rows(campaign: Campaign, folder: Path, results) -> list[TrialRow]:
    """One row per Tune trial, from its ledger; errors from Tune's results."""
    ledgers = read_ledgers(folder)
    rows = []
    for result in results:
        trial_id = Path(result.path).name.removeprefix("trial_")
        error = None if result.error is None else (str(result.error).strip().splitlines() or ["error"])[-1][:500]
        rows.append(trial_row(campaign, trial_id, ledgers.get(trial_id, []), error))
    return rows


def close_trial_runs(tracking_uri: str, parent_run_id: str, rows: list[TrialRow]) -> None:
    """Trials stopped by the scheduler never return: end their runs from here."""
    runs = tracking.child_runs(tracking_uri, parent_run_id)
    for row in rows:
        run = runs.get(row.trial_id)
        if run is None:
            continue
        row.run_id = run["run_id"]
        tags = {"zerosum.trial_status": row.status, "zerosum.best_round": row.best_round or 0}
        if row.best_objective is not None:
            tags["zerosum.best_objective"] = row.best_objective
        tracking.set_tags(tracking_uri, row.run_id, tags)
        tracking.end_run(tracking_uri, row.run_id, "FAILED" if row.status == ERRORED else "FINISHED")


def log_report(campaign: Campaign, folder: Path, record: dict[str, Any], rows: list[TrialRow]) -> None:
    uri, parent = record["tracking_uri"], record["parent_run_id"]
    table = trials_csv(campaign, rows)
    ckpt.atomic_write_text(table, folder / "trials.csv")
    tracking.log_text(uri, parent, table, "trials.csv")
    figures = {name: plot(campaign, rows) for name, plot in PLOTS.items()}
    figures["plots/best_so_far.png"] = plot_best_so_far(campaign, rows, record["started_at"])
    import matplotlib.pyplot as plt

    for name, figure in figures.items():
        tracking.log_figure(uri, parent, figure, name)
        plt.close(figure)
    for name in ("pbt_global.txt",):
        if (folder / name).is_file():
            tracking.log_artifact(uri, parent, folder / name, "pbt")


def count_exploits(folder: Path) -> int:
    """PBT writes one line to pbt_global.txt per exploit."""
    path = folder / "pbt_global.txt"
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


def register_champion(campaign: Campaign, tracking_uri: str, parent_run_id: str, champion: Champion) -> str:
    """Log the champion's generator (as it was at its best report) into its trial's run,
    register it under the campaign's model name and point `champion` at it."""
    from zerosum.train.runner import log_checkpoint_generator

    state = ckpt.load_weights(champion.checkpoint_path / ckpt.STATE_FILE)
    spec = validate_job(yaml.safe_load(state["config_yaml"]), source="champion checkpoint", check_paths=False)
    about = {"campaign": campaign.name, "trial_id": champion.trial_id, "objective": champion.objective,
             "round": champion.round}
    version = log_checkpoint_generator(spec, state, tracking_uri, champion.run_id or parent_run_id,
                                       campaign.register_as, "champion", about)
    tags = {"zerosum.campaign": campaign.name, "zerosum.trial_id": champion.trial_id,
            "zerosum.objective": f"{champion.objective:.6g}",
            "zerosum.objective_metric": campaign.spec.objective.describe(), "zerosum.round": champion.round,
            "zerosum.parent_run_id": parent_run_id}
    tracking.set_model_version_tags(tracking_uri, campaign.register_as, version, tags)
    tracking.set_tags(tracking_uri, parent_run_id, {"zerosum.champion_trial": champion.trial_id,
                                                    "zerosum.champion_version": version})
    return f"models:/{campaign.register_as}@champion"
