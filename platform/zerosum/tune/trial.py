"""What one Tune trial runs: the training loop of `zerosum run`, under a Tune session.

A trial is either a single process (`TuneSession`: rank 0 of 1, checkpoints through
`ray.tune.report`), which is what PBT needs, or a Ray Train driver that fits a
TorchTrainer whose reports reach Tune through `TuneReportCallback`. Both run
`zerosum.train.loop.train_worker`; there is no second loop.

Every report gains `objective` (the campaign's metric, or weighted sum of metrics)
and `hp/<path>` (the trial's current hyperparameters, which PBT may change), and
both go to the trial's nested MLflow run with the round as step.

A trial's MLflow writes go through an outbox (`zerosum.outbox`) in its folder,
`<campaign>/train/<trial id>/`, as a run's do, so that trials train on while the
tracking server is away; the campaign's end (or `zerosum sync CAMPAIGN_FOLDER`)
sends what is left. A single-process trial's loop and reporter share one outbox; in a
Ray Train trial, rank 0 keeps one in that folder and the reporter, which runs in the
Train controller, one in its `objective/` subfolder, which the campaign's end drains.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray.tune
import torch
from ray.tune.integration.ray_train import TuneReportCallback

from zerosum import tracking
from zerosum.config import JobSpec, flatten, job_to_dict, job_to_yaml
from zerosum.errors import ZerosumError
from zerosum.files import atomic_write_text
from zerosum.outbox import Outbox, fail_fast_requests
from zerosum.records import RECORD_FILE, FolderRecord
from zerosum.tracking import RunLogger, TrackedRun, outbox_sender
from zerosum.train.loop import train_worker
from zerosum.train.session import InProcessSession
from zerosum.tune.campaign import Campaign
from zerosum.tune.schema import LEDGER_FOLDER, OBJECTIVE_KEY, REPORT_FILE, REPORTER_FOLDER, TRAIN_FOLDER

# The outbox each trial folder has open in this process. Tune reuses a trial's process
# for the next trial (or a PBT restart of the same one) and may stop a trial without its
# loop reaching the end: the previous sender must stop before a new one opens its folder.
OPEN_OUTBOXES: dict[Path, Outbox] = {}


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a campaign shares (sent once through the object store)."""

    campaign: Campaign
    folder: str
    parent: TrackedRun
    experiment: str


@dataclass
class ObjectiveReporter:
    """Adds the objective and hyperparameters to a report, logs them to MLflow, and keeps
    the trial's ledger: one JSON line per report in `<campaign>/reports/<trial id>.jsonl`.

    The ledger, not Tune's result files, is what the campaign's table is built from:
    it is written by the trial itself before Tune sees the report."""

    trial_id: str
    terms: dict[str, float]
    mode: str
    hyperparams: dict[str, Any]
    ledger: str | None = None
    run: TrackedRun | None = None
    # The outbox's folder; the Outbox itself is opened where the reports are made (the
    # reporter is pickled to Ray Train's controller, and a thread does not travel).
    outbox_dir: str | None = None
    _outbox: Outbox | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_outbox": None}

    def journal(self) -> Outbox | None:
        """The trial's outbox, opened on first use; None for an untracked trial."""
        if self._outbox is None and self.run is not None and self.outbox_dir is not None:
            self._outbox = open_trial_outbox(self.run, Path(self.outbox_dir))
        return self._outbox

    def complete(self, metrics: dict[str, Any]) -> dict[str, Any]:
        missing = [key for key in self.terms if key not in metrics]
        if missing:
            raise ZerosumError(f"campaign.objective: {missing} not in the trial's report "
                               f"(reported: {sorted(metrics)}); check the base job's eval.metrics")
        value = sum(weight * float(metrics[key]) for key, weight in self.terms.items())
        if math.isnan(value):
            # A diverged trial ranks last instead of poisoning the scheduler's quantiles.
            value = -math.inf if self.mode == "max" else math.inf
        # MLflow metric names allow no '*': optim.*.lr is logged as hp/optim.all.lr.
        numeric = {f"hp/{k.replace('*', 'all')}": float(v) for k, v in self.hyperparams.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        completed = {**metrics, OBJECTIVE_KEY: value, **numeric}
        if self.ledger is not None:
            self.append_ledger(completed)
        round_index = int(metrics.get("round", -1))
        outbox = self.journal()
        # Rounds replayed after a restart are not logged twice (as the loop's RunLogger does).
        if outbox is not None and round_index > outbox.high_water.get(OBJECTIVE_KEY, -1):
            outbox.put("metrics", {OBJECTIVE_KEY: value, **numeric}, round_index)
        return completed

    def entry(self, completed: dict[str, Any]) -> dict[str, Any]:
        metrics = {k: float(v) for k, v in completed.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("hp/")}
        return {"trial_id": self.trial_id, "time": time.time(), "round": int(completed.get("round", 0)),
                OBJECTIVE_KEY: completed[OBJECTIVE_KEY], "metrics": metrics, "params": self.hyperparams}

    def append_ledger(self, completed: dict[str, Any]) -> None:
        path = Path(self.ledger)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(self.entry(completed)) + "\n")

    def stamp(self, folder: str | Path, completed: dict[str, Any]) -> None:
        """Write report.json into a checkpoint folder: which trial, round and objective it
        holds, so that the champion is looked up by content, not by folder name."""
        atomic_write_text(json.dumps(self.entry(completed)), Path(folder) / REPORT_FILE)


class TuneSession(InProcessSession):
    """The loop's Session for a single-process Tune trial: rank 0 of 1, its checkpoints
    and reports through Tune."""

    def __init__(self, reporter: ObjectiveReporter, use_gpu: bool = False):
        super().__init__(device=torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu"))
        self.reporter = reporter

    def get_checkpoint(self):
        return ray.tune.get_checkpoint()

    def report(self, metrics: dict[str, Any], checkpoint) -> None:
        completed = self.reporter.complete(metrics)
        if checkpoint is not None:
            # The loop's folder is local and still open: stamp it before Tune copies it.
            self.reporter.stamp(checkpoint.path, completed)
            # The loop builds a ray.train.Checkpoint; Tune wants its own class for the same folder.
            if not isinstance(checkpoint, ray.tune.Checkpoint):
                checkpoint = ray.tune.Checkpoint(checkpoint.path, checkpoint.filesystem)
        ray.tune.report(completed, checkpoint=checkpoint)


class ObjectiveTuneReportCallback(TuneReportCallback):
    """TuneReportCallback that adds the objective (runs in the Ray Train controller)."""

    def __init__(self, reporter: ObjectiveReporter):
        super().__init__()
        self.reporter = reporter

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        completed = self.reporter.complete(metrics[0])
        if checkpoint is not None:
            # Ray Train has already persisted it (campaign folders are on local or shared disk).
            self.reporter.stamp(checkpoint.path, completed)
        super().after_report(run_context, [completed, *metrics[1:]], checkpoint)


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Tune's function trainable: train the base job with this trial's params."""
    # One INFO line per persisted checkpoint from every trial drowns the progress line.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    campaign = context.campaign
    spec = campaign.trial_spec(config)
    trial_id = ray.tune.get_context().get_trial_id()
    run = open_trial_run(context, spec, trial_id)
    ledger = Path(context.folder) / LEDGER_FOLDER / f"{trial_id}.jsonl"
    trial_dir = Path(context.folder) / TRAIN_FOLDER / trial_id
    save_trial_record(run, trial_dir)
    single = campaign.spec.trial.mode == "single"
    objective = campaign.spec.objective
    reporter = ObjectiveReporter(trial_id, objective.terms(), objective.mode, dict(config), str(ledger), run,
                                 str(trial_dir if single else trial_dir / REPORTER_FOLDER))
    loop_config = {"job": job_to_dict(spec), "tracking_uri": run.tracking_uri, "run_id": run.run_id, "fault": None}
    if single:
        # The loop closes this shared outbox when it ends (after the last report).
        logger = RunLogger(run, outbox=reporter.journal())
        train_worker(loop_config, TuneSession(reporter, use_gpu=campaign.spec.resources.gpus > 0), logger)
    else:
        fit_ray_train_trial(spec, {**loop_config, "run_dir": str(trial_dir)}, reporter, trial_dir)


def save_trial_record(run: TrackedRun, folder: Path) -> None:
    """`folder/record.json` naming the trial's run, if the folder has none: where the
    entries of an outbox in it go, and the trial's run id for the campaign's table."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / RECORD_FILE).is_file():
        FolderRecord("trial", folder.name, run.tracking_uri, run.run_id, "", time.time()).save(folder)


def open_trial_outbox(run: TrackedRun, folder: Path) -> Outbox:
    """An outbox in `folder` for the trial's run, with the folder's record naming that run,
    so that the campaign's end and `zerosum sync` know where its entries go."""
    save_trial_record(run, folder)
    previous = OPEN_OUTBOXES.pop(folder, None)
    if previous is not None:
        previous.close(timeout_s=0)
    fail_fast_requests()
    OPEN_OUTBOXES[folder] = Outbox(folder, outbox_sender(run, folder))
    return OPEN_OUTBOXES[folder]


def fit_ray_train_trial(spec: JobSpec, loop_config: dict[str, Any], reporter: ObjectiveReporter,
                        run_dir: Path) -> None:
    """A TorchTrainer inside the trial, with its run folder in the campaign's
    (`train/<trial id>`), so a resumed campaign resumes it from its latest checkpoint."""
    from zerosum.train.driver import build_trainer

    trainer = build_trainer(spec, run_dir, loop_config, callbacks=[ObjectiveTuneReportCallback(reporter)])
    trainer.fit()


def open_trial_run(context: TrialContext, spec: JobSpec, trial_id: str) -> TrackedRun:
    """The trial's nested MLflow run: found again by its trial id after a restart
    (PBT exploit, resumed campaign), else created with the job's params."""
    run = context.parent.find_child(trial_id)
    if run is not None:
        run.reopen()
        return run
    name = context.campaign.name
    tags = {tracking.TRIAL_TAG: trial_id, "zerosum.campaign": name, "zerosum.campaign_dir": context.folder}
    return TrackedRun.start(context.parent.tracking_uri, context.experiment, f"{name}-{trial_id}",
                            flatten(job_to_dict(spec)), job_to_yaml(spec), tags=tags, parent=context.parent)
