"""The driver of `zerosum tune`: campaign folder, parent MLflow run, Tuner, and the end.

A campaign folder is `<storage>/<campaign>-<time>/`: Tune's experiment folder, plus
`record.json` (zerosum.records) with the parent run, so that `zerosum tune SPEC --resume` restores
the Tuner (`Tuner.restore`) and keeps logging into the same parent run. At the end
the parent run gets trials.csv and plots, and the best trial's generator is
registered under the campaign's model name with the alias `champion`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from zerosum.config import flatten, job_to_dict
from zerosum.errors import ZerosumError, first_line
from zerosum.files import atomic_write_text
from zerosum.records import RECORD_FILE, FolderRecord, latest_folder, new_folder
from zerosum.tracking import TrackedRun
from zerosum.tune.campaign import Campaign, campaign_cpu_problem, load_campaign
from zerosum.tune.champion import Champion, find_champion, register_champion
from zerosum.tune.report import ERRORED, PLOTS, STOPPED, TrialRow, plot_best_so_far, read_ledgers, trial_row, trials_csv
from zerosum.tune.schedulers import build_scheduler, build_searcher
from zerosum.tune.schema import OBJECTIVE_KEY, ROWS_FILE, TRAIN_FOLDER, PbtSpec
from zerosum.tune.space import param_space

log = logging.getLogger(__name__)

TRIAL_DRIVER_MEMORY_BYTES = 256 * 2**20


@dataclass
class CampaignResult:
    folder: Path
    parent: TrackedRun
    rows: list[TrialRow]
    champion: Champion | None
    model_uri: str | None
    exploits: int
    wall_s: float
    notes: list[str] = field(default_factory=list)


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


def prepare_campaign(campaign: Campaign, resume: bool, tracking_uri: str) -> tuple[Path, FolderRecord]:
    """Create (or reopen) the campaign folder and its parent MLflow run."""
    if resume:
        folder = latest_folder(campaign.storage_path, campaign.name, "campaign", "campaign.tracking.storage_path")
        record = FolderRecord.load(folder)
        if record.finished_at is not None:
            raise ZerosumError(f"--resume: campaign '{campaign.name}' in {folder} has finished; its results are "
                               f"in {folder / 'trials.csv'} and MLflow run {record.run_id}")
        parent = TrackedRun(record.tracking_uri, record.run_id)
        parent.reopen()
        record.resumes += 1
        record.save(folder)
        parent.set_tags({"zerosum.resumes": record.resumes})
        return folder, record
    folder = new_folder(campaign.storage_path, campaign.name)
    text = campaign_yaml(campaign)
    atomic_write_text(text, folder / "campaign.yaml")
    tags = {"zerosum.campaign": campaign.name, "zerosum.campaign_dir": str(folder), "zerosum.kind": "campaign"}
    experiment = campaign.base.experiment_name
    parent = TrackedRun.start(tracking_uri, experiment, folder.name, parent_params(campaign), text, tags=tags)
    record = FolderRecord("campaign", campaign.name, tracking_uri, parent.run_id, experiment, time.time())
    record.save(folder)
    return folder, record


# --------------------------------------------------------------------------- Tune objects


def trial_dirname(trial) -> str:
    """Short trial folders (Tune's default repeats every param in the name)."""
    return f"trial_{trial.trial_id}"


def trial_trainable(campaign: Campaign, folder: Path, record: FolderRecord):
    """run_trial with the campaign's shared context and per-trial resources."""
    from ray import tune

    from zerosum.tune.trial import TrialContext, run_trial

    spec = campaign.spec
    context = TrialContext(campaign, str(folder), TrackedRun(record.tracking_uri, record.run_id), record.experiment)
    if spec.trial.mode == "single":
        resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    else:
        # The trial only drives a TorchTrainer, whose workers hold the CPUs and GPUs; Tune
        # refuses an empty request, and what the driver process does need is memory.
        resources = {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY_BYTES}
    return tune.with_resources(tune.with_parameters(run_trial, context=context), resources)


def build_tuner(campaign: Campaign, folder: Path, record: FolderRecord, resume: bool):
    from ray import tune

    from zerosum.tune.progress import CampaignProgress

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
        trainable, param_space=param_space(campaign.spec),
        tune_config=tune.TuneConfig(metric=OBJECTIVE_KEY, mode=spec.objective.mode,
                                    scheduler=build_scheduler(campaign), search_alg=build_searcher(campaign),
                                    num_samples=spec.num_samples, trial_dirname_creator=trial_dirname,
                                    # A new trial (or a PBT restart) reuses a finished trial's process:
                                    # no new interpreter, no re-import of torch. Not for Ray Train
                                    # trials: fit() outlives Tune's 2 s wait and the reuse then hangs.
                                    reuse_actors=spec.trial.mode == "single"),
        run_config=tune.RunConfig(
            name=folder.name, storage_path=str(folder.parent), verbose=0, callbacks=[progress],
            # Tune reads -1 as unlimited, as scaling.max_failures does.
            failure_config=tune.FailureConfig(max_failures=campaign.base.scaling.max_failures),
            # PBT clones the latest checkpoint, which Tune always keeps; the best ones by
            # objective stay for the champion.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=None if keep is None else max(keep, 3),
                checkpoint_score_attribute=OBJECTIVE_KEY, checkpoint_score_order=spec.objective.mode)),
    )


# --------------------------------------------------------------------------- run and finish


def run_campaign(campaign: Campaign, resume: bool = False, verbose: bool = False) -> CampaignResult:
    """Run (or resume) the campaign on Ray Tune and record it in MLflow."""
    from zerosum import tracking
    from zerosum.evaluation.featurizer import prepare_eval_spec
    from zerosum.runtime import init_ray, refuse_on_cluster

    # As `zerosum run` does: classifier features are trained once, here, not in every trial.
    campaign.base = prepare_eval_spec(campaign.base)
    folder, record = prepare_campaign(campaign, resume, tracking.resolve_tracking_uri())
    parent = TrackedRun(record.tracking_uri, record.run_id)
    ray_note = init_ray(log_dir=folder, verbose=verbose, with_dashboard=campaign.spec.trial.mode == "ray-train")
    # A streamed campaign whose trials leave Ray Data no CPU would hang at round 0, as a run would.
    refuse_on_cluster(partial(campaign_cpu_problem, campaign), parent)
    tuner = build_tuner(campaign, folder, record, resume)
    try:
        results = tuner.fit()
    except Exception as err:
        parent.end("FAILED")
        raise ZerosumError(f"campaign failed: {err}\nresume with: zerosum tune SPEC --resume") from err
    unfinished = len(results) - results.num_terminated - results.num_errors
    if unfinished:
        # Ctrl-C: Tune saved its state and returned early.
        parent.end("KILLED")
        raise ZerosumError(f"campaign interrupted with {unfinished} trials unfinished ({folder})\n"
                           f"resume with: zerosum tune SPEC --resume")
    finished = finish_campaign(campaign, folder, record, results)
    finished.notes += [ray_note] if ray_note else []
    return finished


def finish_campaign(campaign: Campaign, folder: Path, record: FolderRecord, results) -> CampaignResult:
    """The table and the champion on disk, then the tracking: the trials' outboxes sent,
    their runs closed, trials.csv, plots and the champion logged to the parent run. If the
    tracking server does not answer, the campaign still ends: everything is in its folder
    and `zerosum sync CAMPAIGN_FOLDER` logs the rest."""
    from zerosum.outbox import failing_fast

    rows = collect_rows(campaign, folder, results)
    for row in rows:
        row.run_id = trial_run_id(folder, row.trial_id)
    if rows and all(row.status == ERRORED for row in rows):
        TrackedRun(record.tracking_uri, record.run_id).end("FAILED")
        raise ZerosumError(f"every trial failed; the first: {rows[0].error}")
    atomic_write_text(trials_csv(campaign, rows), folder / "trials.csv")
    atomic_write_text(json.dumps([asdict(row) for row in rows]), folder / ROWS_FILE)
    champion = find_champion(folder, campaign.spec.objective.mode)
    exploits = count_exploits(folder)
    record.finished_at = time.time()
    try:
        # A server that is away must cost seconds here, not MLflow's minutes of retries.
        with failing_fast():
            model_uri = log_campaign(campaign, folder, record, rows, champion, exploits)
        record.logged, notes = True, []
    except Exception as err:  # noqa: BLE001 - MLflow, requests and OS errors alike mean "not logged yet"
        record.logged, model_uri = False, None
        notes = [f"the tracking server at {record.tracking_uri} did not take the campaign's results "
                 f"({type(err).__name__}: {first_line(err)}); they are kept in {folder}: "
                 f"send them with `zerosum sync {folder}`"]
    record.save(folder)
    return CampaignResult(folder, TrackedRun(record.tracking_uri, record.run_id), rows, champion, model_uri,
                          exploits, record.finished_at - record.started_at, notes)


def log_campaign(campaign: Campaign, folder: Path, record: FolderRecord, rows: list[TrialRow],
                 champion: Champion | None, exploits: int) -> str | None:
    """Everything the campaign sends to MLflow at its end (or from `zerosum sync`);
    -> the champion's model URI. Raises while the server does not answer."""
    parent = TrackedRun(record.tracking_uri, record.run_id)
    _, left = drain_trial_outboxes(folder)
    if left:
        raise ConnectionError(f"{left} writes of the trials are still in their outboxes")
    close_trial_runs(parent, rows)
    log_report(campaign, folder, record, rows)
    model_uri = None
    if champion is not None:
        champion.run_id = next((r.run_id for r in rows if r.trial_id == champion.trial_id), None)
        model_uri = register_champion(campaign, parent, champion)
    summary = {"campaign/trials": len(rows), "campaign/stopped_early": sum(r.status == STOPPED for r in rows),
               "campaign/errored": sum(r.status == ERRORED for r in rows), "campaign/exploits": exploits,
               "campaign/wall_s": record.finished_at - record.started_at}
    if champion is not None:
        summary["campaign/best_objective"] = champion.objective
    parent.log_metrics(summary, 0)
    parent.end()
    return model_uri


def trial_run_id(folder: Path, trial_id: str) -> str | None:
    """The trial's MLflow run, from the record its folder keeps (None if it never started)."""
    trial_dir = folder / TRAIN_FOLDER / trial_id
    return FolderRecord.load(trial_dir).run_id if (trial_dir / RECORD_FILE).is_file() else None


def drain_trial_outboxes(folder: Path) -> tuple[int, int]:
    """Send what every trial's outbox under `<campaign>/train/` still holds, each to the run
    its folder's record names; -> (entries sent, entries left because the server refused one)."""
    from zerosum.outbox import OUTBOX_FOLDER, drain
    from zerosum.tracking import outbox_sender

    sent = left = 0
    for outbox_folder in sorted((folder / TRAIN_FOLDER).glob(f"**/{OUTBOX_FOLDER}")):
        home = outbox_folder.parent
        trial = FolderRecord.load(home)
        sent_here, left_here = drain(home, outbox_sender(TrackedRun(trial.tracking_uri, trial.run_id), home))
        sent, left = sent + sent_here, left + left_here
    return sent, left


def sync_campaign(folder: Path) -> tuple[int, str | None]:
    """`zerosum sync CAMPAIGN_FOLDER`: send what the trials kept and, if the campaign's end
    could not log its results, log them now. -> (writes sent, champion URI or None)."""
    record = FolderRecord.load(folder)
    if record.finished_at is None:
        raise ZerosumError(f"{folder}: the campaign has not finished; resume it with "
                           "`zerosum tune SPEC --resume`")
    sent, left = drain_trial_outboxes(folder)
    if left:
        raise ZerosumError(f"the tracking server at {record.tracking_uri} took {sent} writes and refused the "
                           f"next; {left} are still kept in {folder / TRAIN_FOLDER}: run `zerosum sync` again")
    if record.logged is not False:
        return sent, None
    campaign = load_campaign(folder / "campaign.yaml", check_paths=False)
    rows = [TrialRow(**row) for row in json.loads((folder / ROWS_FILE).read_text())]
    champion = find_champion(folder, campaign.spec.objective.mode)
    model_uri = log_campaign(campaign, folder, record, rows, champion, count_exploits(folder))
    record.logged = True
    record.save(folder)
    return sent, model_uri


def collect_rows(campaign: Campaign, folder: Path, results) -> list[TrialRow]:
    """One row per Tune trial, from its ledger; errors from Tune's results."""
    ledgers = read_ledgers(folder)
    rows = []
    for result in results:
        trial_id = Path(result.path).name.removeprefix("trial_")
        error = None if result.error is None else (str(result.error).strip().splitlines() or ["error"])[-1][:500]
        rows.append(trial_row(campaign, trial_id, ledgers.get(trial_id, []), error))
    return rows


def close_trial_runs(parent: TrackedRun, rows: list[TrialRow]) -> None:
    """Trials stopped by the scheduler never return: end their runs from here."""
    runs = parent.child_runs()
    for row in rows:
        found = runs.get(row.trial_id)
        if found is None:
            continue
        row.run_id = found["run_id"]
        run = TrackedRun(parent.tracking_uri, row.run_id)
        tags = {"zerosum.trial_status": row.status, "zerosum.best_round": row.best_round or 0}
        if row.best_objective is not None:
            tags["zerosum.best_objective"] = row.best_objective
        run.set_tags(tags)
        run.end("FAILED" if row.status == ERRORED else "FINISHED")


def log_report(campaign: Campaign, folder: Path, record: FolderRecord, rows: list[TrialRow]) -> None:
    parent = TrackedRun(record.tracking_uri, record.run_id)
    parent.log_text(trials_csv(campaign, rows), "trials.csv")
    figures = {name: plot(campaign, rows) for name, plot in PLOTS.items()}
    figures["plots/best_so_far.png"] = plot_best_so_far(campaign, rows, record.started_at)
    import matplotlib.pyplot as plt

    for name, figure in figures.items():
        parent.log_figure(figure, name)
        plt.close(figure)
    if (folder / "pbt_global.txt").is_file():
        parent.log_artifact(folder / "pbt_global.txt", "pbt")


def count_exploits(folder: Path) -> int:
    """PBT writes one line to pbt_global.txt per exploit."""
    path = folder / "pbt_global.txt"
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0
