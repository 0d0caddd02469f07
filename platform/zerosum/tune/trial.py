"""What one Tune trial runs: the training loop of `zerosum run`, under a Tune session.

A trial is either a single process (`TuneSession`: rank 0 of 1, checkpoints through
`ray.tune.report`), which is what PBT needs, or a Ray Train driver that fits a
TorchTrainer whose reports reach Tune through `TuneReportCallback`. Both run
`zerosum.train.loop.train_worker`; there is no second loop.

Every report gains `objective` (the campaign's metric, or weighted sum of metrics)
and `hp/<path>` (the trial's current hyperparameters, which PBT may change), and
both go to the trial's nested MLflow run with the round as step.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.tune
import torch
from ray.tune.integration.ray_train import TuneReportCallback
from torch import nn

from zerosum import tracking
from zerosum.config import JobSpec, flatten, job_to_dict, job_to_yaml
from zerosum.errors import ZerosumError
from zerosum.files import atomic_write_text
from zerosum.tracking import TrackedRun
from zerosum.train.loop import train_worker
from zerosum.tune.campaign import Campaign
from zerosum.tune.schema import LEDGER_FOLDER, OBJECTIVE_KEY, REPORT_FILE, TRAIN_FOLDER


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
    # Rounds replayed after a restart are not logged twice (as the loop's RunLogger does).
    last_logged_round: int = -1

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
        if self.run is not None and round_index > self.last_logged_round:
            self.run.log_metrics({OBJECTIVE_KEY: value, **numeric}, round_index)
            self.last_logged_round = round_index
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


class TuneSession:
    """The loop's Session for a single-process Tune trial: rank 0 of 1."""

    rank = 0
    world_size = 1

    def __init__(self, reporter: ObjectiveReporter, use_gpu: bool = False):
        self.reporter = reporter
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device)

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
    objective = campaign.spec.objective
    reporter = ObjectiveReporter(trial_id, objective.terms(), objective.mode, dict(config), str(ledger), run,
                                 run.last_metric_step(OBJECTIVE_KEY))
    loop_config = {"job": job_to_dict(spec), "tracking_uri": run.tracking_uri, "run_id": run.run_id, "fault": None}
    if campaign.spec.trial.mode == "single":
        train_worker(loop_config, TuneSession(reporter, use_gpu=campaign.spec.resources.gpus > 0))
    else:
        fit_ray_train_trial(spec, loop_config, reporter, Path(context.folder) / TRAIN_FOLDER / trial_id)


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
