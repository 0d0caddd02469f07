"""The driver side of `zerosum run`: run folder, MLflow run, TorchTrainer, final model.

A run folder is `<tracking.storage_path>/<run name>/`; Ray Train keeps its
checkpoints there, and `record.json` (zerosum.records) holds the MLflow run so that
`zerosum run SPEC --resume` continues both the Ray run and the MLflow run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerosum import tracking
from zerosum.config import JobSpec, flatten, job_to_dict, job_to_yaml
from zerosum.data import describe_dataset
from zerosum.errors import ZerosumError, first_line
from zerosum.evaluation.featurizer import prepare_eval_spec
from zerosum.files import atomic_write_text
from zerosum.outbox import failing_fast
from zerosum.pictures import save_png
from zerosum.records import FolderRecord, latest_folder, new_folder
from zerosum.runtime import RAY_LOG, collect_ray_logs, init_ray, refuse_on_cluster
from zerosum.serving import load_trained_generator, log_checkpoint_generator, sample_picture
from zerosum.tracking import TrackedRun
from zerosum.train import checkpoint as ckpt
from zerosum.train.health import ROLLBACK_TAG_PREFIX

log = logging.getLogger(__name__)

FAULT_ENV = "ZEROSUM_INJECT_FAULT"


@dataclass
class RunResult:
    run_dir: Path
    run: TrackedRun
    rounds_done: int
    model_uri: str | None
    grid_path: Path | None
    final_metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)


def prepare_run(spec: JobSpec, resume: bool, tracking_uri: str) -> tuple[Path, TrackedRun]:
    """Create (or reopen) the run folder and the MLflow run."""
    if resume:
        run_dir = latest_folder(spec.tracking.storage_path, spec.name, "run", "tracking.storage_path")
        record = FolderRecord.load(run_dir)
        run = TrackedRun(record.tracking_uri, record.run_id)
        run.reopen()
        record.resumes += 1
        record.save(run_dir)
        return run_dir, run
    run_dir = new_folder(spec.tracking.storage_path, spec.name)
    config_yaml = job_to_yaml(spec)
    atomic_write_text(config_yaml, run_dir / ckpt.CONFIG_FILE)
    run = TrackedRun.start(tracking_uri, spec.experiment_name, run_dir.name, flatten(job_to_dict(spec)),
                           config_yaml, tags={"zerosum.run_dir": str(run_dir)})
    FolderRecord("run", spec.name, tracking_uri, run.run_id, spec.experiment_name, time.time()).save(run_dir)
    return run_dir, run


def fault_from_env(run_dir: Path) -> dict[str, Any] | None:
    """ZEROSUM_INJECT_FAULT='round=3,rank=1' kills that worker once (tests of recovery)."""
    text = os.environ.get(FAULT_ENV)
    if not text:
        return None
    fields = dict(part.split("=", 1) for part in text.split(","))
    return {"round": int(fields["round"]), "rank": int(fields.get("rank", 0)),
            "marker": str(run_dir / ".fault-injected")}


def build_trainer(spec: JobSpec, run_dir: Path, loop_config: dict[str, Any], callbacks: list | None = None):
    """A TorchTrainer for the spec, writing checkpoints into run_dir."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from zerosum.train.loop import train_loop_per_worker

    scaling = spec.scaling
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        **streamed_datasets(spec),
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker={"CPU": scaling.cpus_per_worker}),
        run_config=RunConfig(
            name=run_dir.name, storage_path=str(run_dir.parent),
            failure_config=FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=spec.checkpoint.keep),
            callbacks=callbacks or [],
        ),
    )


def streamed_datasets(spec: JobSpec) -> dict[str, Any]:
    """The trainer's datasets and their DataConfig when the job streams its data, else none:
    Ray Data then reads and decodes on CPU tasks and splits the rows among the workers."""
    if not spec.data.streaming:
        return {}
    from zerosum.streaming import STREAM, stream_config, streamed_dataset

    return {"datasets": {STREAM: streamed_dataset(spec.data, seed=spec.schedule.seed)},
            "dataset_config": stream_config()}


def run_job(spec: JobSpec, resume: bool = False, watch: Callable[[TrackedRun, int], Any] | None = None,
            verbose: bool = False) -> RunResult:
    """Train the job on Ray Train and log the final generator. `watch(run, total_rounds)`
    is an optional context manager factory that shows progress while training runs."""
    spec = prepare_eval_spec(spec)
    run_dir, run = prepare_run(spec, resume, tracking.resolve_tracking_uri())
    ray_note = init_ray(log_dir=run_dir, verbose=verbose)
    from zerosum.streaming import run_cpu_problem

    # A streamed job that leaves Ray Data no CPU would hang at round 0.
    refuse_on_cluster(lambda cluster: run_cpu_problem(spec, cluster.get("CPU", 0.0)), run)
    loop_config = {"job": job_to_dict(spec), "tracking_uri": run.tracking_uri, "run_id": run.run_id,
                   "run_dir": str(run_dir), "fault": fault_from_env(run_dir)}
    trainer = build_trainer(spec, run_dir, loop_config)
    try:
        with watch(run, spec.schedule.total_rounds) if watch else nullcontext():
            result = trainer.fit()
    except Exception as err:
        with contextlib.suppress(Exception):  # the tracking server may be the thing that is down
            run.end("FAILED")
        raise ZerosumError(f"training failed: {err}\nRay's logs: {run_dir / RAY_LOG}\n"
                           f"resume with: zerosum run SPEC --resume") from err
    finally:
        if not verbose:
            collect_ray_logs(run_dir)
    finished = finish_run(spec, run_dir, run, Path(result.checkpoint.path))
    finished.final_metrics = {k: float(v) for k, v in (result.metrics or {}).items() if k.startswith("eval/")}
    finished.notes += [ray_note] if ray_note else []
    return finished


def finish_run(spec: JobSpec, run_dir: Path, run: TrackedRun, checkpoint_dir: Path) -> RunResult:
    """A final grid on disk, then the tracking: curves, the generator (registered, alias
    'candidate'), the run closed. If the tracking server does not answer, the run still
    ends: its generator is in the checkpoint and `zerosum sync RUN_FOLDER` logs the rest."""
    state = ckpt.load_weights(checkpoint_dir / ckpt.STATE_FILE)
    grid_path = run_dir / "samples.png"
    shape = describe_dataset(spec.data)
    save_png(sample_picture(spec, load_trained_generator(spec, state, shape), shape[1]), grid_path)
    record = FolderRecord.load(run_dir)
    record.finished_at = time.time()
    try:
        # A server that is away must cost seconds here, not MLflow's minutes of retries;
        # `zerosum sync` later retries as MLflow does.
        with failing_fast():
            # What rank 0 could not send before it ended goes first: the server may be back.
            _, left = drain_outbox(run_dir, run)
            if left:
                raise ConnectionError(f"{left} writes of the workers are still in the outbox")
            model_uri = log_final_model(spec, run, state)
        record.logged = True
        notes = run_notes(run)
    except Exception as err:  # noqa: BLE001 - MLflow, requests and OS errors alike mean "not logged yet"
        record.logged = False
        model_uri = None
        notes = [f"the tracking server at {run.tracking_uri} did not take the run's results "
                 f"({type(err).__name__}: {first_line(err)}); "
                 f"they are kept in {run_dir}: send them with `zerosum sync {run_dir}`"]
    record.save(run_dir)
    return RunResult(run_dir, run, int(state["rounds_done"]), model_uri, grid_path, {}, notes)


def log_final_model(spec: JobSpec, run: TrackedRun, state: dict[str, Any]) -> str:
    """Loss curves and the generator logged (registered when the spec asks), the run ended;
    -> the model's URI."""
    tracking.log_loss_curves(run)
    version = log_checkpoint_generator(spec, state, run, spec.tracking.register_as, "candidate")
    run.end()
    return f"models:/{spec.tracking.register_as}@candidate" if version else f"runs:/{run.run_id}/generator"


def drain_outbox(run_dir: Path, run: TrackedRun) -> tuple[int, int]:
    """Send what the run's outbox still holds, in order; -> (sent, left)."""
    from zerosum.outbox import drain

    return drain(run_dir, tracking.outbox_sender(run, run_dir))


def sync_run(run_dir: Path) -> tuple[int, str | None]:
    """`zerosum sync`: send what a run folder's outbox holds, then, if the run's results
    were never logged, its generator from the newest trusted checkpoint.
    -> (writes sent, model URI or None when the results were logged before)."""
    from zerosum.config import load_job
    from zerosum.outbox import OUTBOX_FOLDER

    record = FolderRecord.load(run_dir)
    run = TrackedRun(record.tracking_uri, record.run_id)
    sent, left = drain_outbox(run_dir, run)
    if left:
        raise ZerosumError(f"the tracking server at {record.tracking_uri} took {sent} writes and refused the "
                           f"next; {left} are still kept in {run_dir / OUTBOX_FOLDER}: run `zerosum sync` again")
    if record.logged is not False:
        return sent, None
    checkpoint_dir = ckpt.newest_trusted_folder(run_dir)
    if checkpoint_dir is None:
        raise ZerosumError(f"{run_dir}: no checkpoint passes its manifest; there is no generator to log")
    spec = load_job(run_dir / ckpt.CONFIG_FILE, check_paths=False)
    model_uri = log_final_model(spec, run, ckpt.load_weights(checkpoint_dir / ckpt.STATE_FILE))
    record.logged = True
    record.save(run_dir)
    return sent, model_uri


def run_notes(run: TrackedRun) -> list[str]:
    """What the workers had to say, from the run's tags: rollbacks, the stop reason, then warnings."""
    tags = run.tags()
    rollbacks = sorted((int(k.rsplit(".", 1)[1]), v) for k, v in tags.items() if k.startswith(ROLLBACK_TAG_PREFIX))
    notes = [f"rollback {n}: {text}" for n, text in rollbacks]
    if tracking.STOP_REASON_TAG in tags:
        notes.append(f"stopped early at round {tags.get('zerosum.stopped_at_round')}: {tags[tracking.STOP_REASON_TAG]}")
    return notes + [f"warning: {message}" for message in run.warnings()]
