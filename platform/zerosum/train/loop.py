"""The training loop, shared by `zerosum run` (Ray Train workers) and Tune trials.

`train_loop_per_worker(config)` is what each Ray Train worker runs;
`train_worker(config, session)` is the same loop for any `Session` (a single-process
Tune trial passes a TuneSession from zerosum.tune.trial). There is no second loop.

config (a plain dict, as Ray passes it):
    job: the resolved JobSpec as a dict
    tracking_uri, run_id: where rank 0 logs (run_id None = no MLflow); plain strings, not a
        TrackedRun, because unpickling one would load mlflow on every rank
    run_dir: the run folder, where rank 0 keeps its outbox of MLflow writes (optional)
    fault: optional {"round", "rank", "marker", "kind"}: once, at that round, kill that worker
        (kind "kill") or fill its critic's weights with NaN (kind "nan"); tests
    overrides from Tune (e.g. "optim.d.lr") are applied to `job` by the caller.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import ray.train
import torch

from zerosum.config import JobSpec, job_to_yaml, validate_job
from zerosum.data import Dataset, ShardedBatches, load_dataset
from zerosum.evaluation.evaluator import Evaluator
from zerosum.methods import PhaseContext
from zerosum.streaming import StreamedBatches, stream_description, stream_rows
from zerosum.train import checkpoint as ckpt
from zerosum.train.build import lr_decay_factor
from zerosum.train.ema import ema_decay_at
from zerosum.train.health import Health
from zerosum.train.session import RayTrainSession, Session
from zerosum.train.state import WorkerState, build_worker_state, restore_worker_state, set_learning_rates
from zerosum.train.steps import MetricWindow, run_phase, run_round, update_ema

log = logging.getLogger(__name__)


def autocast_factory(spec: JobSpec, device: torch.device) -> Callable:
    if spec.scaling.precision == "bf16" and device.type == "cuda":
        return partial(torch.autocast, device_type="cuda", dtype=torch.bfloat16)
    return nullcontext


def maybe_inject_fault(fault: dict | None, round_index: int, rank: int, state: WorkerState) -> None:
    """Once, at the given round: kill this worker process, or poison the critic's weights
    with NaN (G's when the method has no critic), for the fault tests."""
    if not fault or fault["round"] != round_index or fault["rank"] != rank:
        return
    marker = Path(fault["marker"])
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    kind = fault.get("kind", "kill")
    marker.write_text(f"killed rank {rank} at round {round_index}\n" if kind == "kill"
                      else f"filled rank {rank}'s critic with NaN at round {round_index}\n")
    if kind == "nan":
        names = state.method.critic_group or state.method.generator_group
        with torch.no_grad():
            for name in names:
                for parameter in state.players[name].parameters():
                    parameter.fill_(float("nan"))
        return
    os.kill(os.getpid(), signal.SIGKILL)


def report(state: WorkerState, metrics: dict[str, float], spec: JobSpec, session: Session, health: Health,
           good: bool) -> None:
    """Every rank writes its share of a checkpoint and reports; Ray merges the folders.
    `good`: the checkpoint's eval passed the divergence guard (a rollback target)."""
    rank = session.rank
    state.extra.update(health.checkpoint_extra(good))
    with tempfile.TemporaryDirectory(prefix="zerosum-ckpt-") as folder:
        ckpt.write_checkpoint(Path(folder), rank, state.model_state() if rank == 0 else None,
                              ckpt.rng_state(state.noise_rng, state.augment_rng), job_to_yaml(spec))
        checkpoint = ray.train.Checkpoint.from_directory(folder)
        session.report({**metrics, "round": state.rounds_done, "health/rollbacks": health.rollbacks}, checkpoint)


def training_data(spec: JobSpec, session: Session) -> tuple[Dataset, ShardedBatches | StreamedBatches]:
    """The training split and this rank's batches of it: in memory, or streamed through Ray
    Data (data.streaming), where the Dataset holds no rows, only the shape and classes."""
    sched = spec.schedule
    if not spec.data.streaming:
        dataset = load_dataset(spec.data, "train", seed=sched.seed)
        return dataset, ShardedBatches(dataset, sched.batch_size, session.rank, session.world_size, seed=sched.seed)
    shard = session.dataset_shard(spec.data, seed=sched.seed)
    batches = StreamedBatches(shard, stream_rows(spec.data), sched.batch_size, session.world_size, sched.seed,
                              spec.data.scale)
    return stream_description(spec.data), batches


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: train G and D for `config["job"]` on this worker's shard."""
    train_worker(config, RayTrainSession())


def rank0_logger(config: dict[str, Any], rank: int):
    """The MLflow run logger on rank 0 when the run is tracked, else None. Its writes go
    through an outbox in the run folder when the loop config names one (`run_dir`).

    Imported here, not at the top: only rank 0 ever loads mlflow."""
    if rank != 0 or not config.get("run_id"):
        return None
    from zerosum.tracking import RunLogger, TrackedRun, outbox_sender

    run = TrackedRun(config["tracking_uri"], config["run_id"])
    if not config.get("run_dir"):
        return RunLogger(run)
    from zerosum.outbox import Outbox, fail_fast_requests

    fail_fast_requests()
    run_dir = Path(config["run_dir"])
    return RunLogger(run, outbox=Outbox(run_dir, outbox_sender(run, run_dir)))


def train_worker(config: dict[str, Any], session: Session, logger=None) -> None:
    """Train G and D for the job in `config["job"]` on this session's shard.

    logger: a RunLogger from the caller (a Tune trial's, whose outbox it shares with the
    trial's reporter); else rank 0 makes its own from `config` (`rank0_logger`)."""
    spec = validate_job(config["job"], source="train_loop config", check_paths=False)
    rank, world_size, device = session.rank, session.world_size, session.device
    memory = MemoryMeter()  # before the data is read: its growth counts the dataset
    eval_meter = EvalMeter()
    dataset, batcher = training_data(spec, session)
    state = build_worker_state(spec, dataset.sample_shape, dataset.num_classes, session)
    resume_notes = restore_worker_state(state, spec, session)
    health = Health(spec, rank, state.extra)
    health.remember_restored(state)
    torch.manual_seed(spec.schedule.seed * 7919 + rank + state.rounds_done)
    sched = spec.schedule
    # A resumed run continues the data where its checkpoint left it, mid-epoch included.
    batcher.start_batch = state.rounds_done * batches_per_round(state, sched)
    batches = iter(batcher)
    ctx = PhaseContext(spec, state.noise, state.noise_rng, state.augment_rng, device,
                       autocast_factory(spec, device), state.critic_updates)
    logger = logger if logger is not None else rank0_logger(config, rank)
    for note in resume_notes if logger is not None else ():
        logger.warn(note)
    with eval_meter.timing():  # the real side's features, when not cached yet, are eval cost
        evaluator = Evaluator(spec, dataset, rank, world_size, device, logger)
    evaluator.load_state_dict(state.extra)
    if logger is not None and state.rounds_done:
        logger.set_tags({"zerosum.resumed_from_round": str(state.rounds_done)})
        # A lost worker or node restarts the group silently (Ray's account is in ray.log):
        # the run's summary says it happened, and from where.
        logger.warn(f"started again from the checkpoint at round {state.rounds_done} "
                    "(a --resume, a PBT exploit, or a lost worker or node)")
    meter = ThroughputMeter(reals_per_round=batches_per_round(state, sched) * sched.batch_size * world_size)
    window, metrics = MetricWindow(), {}
    last_reported = state.rounds_done  # a restored checkpoint counts as reported
    decaying = spec.optim.decay != "constant"
    while state.rounds_done < sched.total_rounds:
        round_index = state.rounds_done + 1
        maybe_inject_fault(config.get("fault"), round_index, rank, state)
        if decaying:
            set_learning_rates(state, spec, health.lr_scale)
        with meter.timing():
            window.add(train_one_round(state, batches, sched, ctx))
            if state.ema is not None:
                decay = ema_decay_at(state.rounds_done, spec.model.ema_decay, warmup=spec.model.ema_warmup)
                update_ema(state.ema, state.generator, decay)
        state.rounds_done = round_index
        memory.sample()
        if round_index % sched.log_every_rounds == 0 or round_index == sched.total_rounds:
            # The meter first: it waits for the GPU's queued rounds and counts that time.
            throughput = meter.read_and_reset()
            # The one host read of the interval's training metrics.
            metrics = window.read() | throughput | memory.read()
            if decaying:  # the factor of the interval's last round, rollbacks' cuts left out
                metrics["optim/lr_factor"] = lr_decay_factor(spec.optim, round_index - 1, sched.total_rounds)
            if logger is not None:
                logger.log_metrics(metrics, round_index)
        if evaluator.due(round_index):
            with eval_meter.timing():
                eval_metrics, verdict = evaluator.evaluate(state, round_index, metrics)
            if verdict.diverged:
                stop_reason = health.refusal(verdict.reason)
                if stop_reason is None:
                    roll_back(state, health, evaluator, ctx, logger, round_index, verdict.reason)
                    window, metrics = MetricWindow(), {}
                    continue
                # The diverged state is not checkpointed: the run ends on its last checkpoint,
                # the one its generator is logged from (unless there is none yet).
                if last_reported == 0:
                    report(state, metrics, spec, session, health, good=False)
                evaluator.log_stop(stop_reason, round_index)
                break
            state.extra = evaluator.state_dict()
            eval_cost = eval_meter.read()
            if logger is not None:
                logger.log_metrics(eval_cost, round_index)
            report(state, {**metrics, **eval_metrics, **eval_cost}, spec, session, health, good=True)
            last_reported = round_index
            health.remember(state)
            if verdict.reason:
                evaluator.log_stop(verdict.reason, round_index)
                break
        elif round_index % spec.checkpoint.every_rounds == 0:
            report(state, metrics, spec, session, health, good=False)
            last_reported = round_index
    if logger is not None:
        left = logger.close(spec.tracking.flush_timeout_s)
        if left:
            log.warning("%d tracking writes could not be sent yet; they are kept in the run folder "
                        "(zerosum sync RUN_FOLDER sends them)", left)


def roll_back(state: WorkerState, health: Health, evaluator: Evaluator, ctx: PhaseContext, logger,
              round_index: int, reason: str) -> None:
    """Heal a divergence found at `round_index`: the last good state, lower lrs, new noise."""
    back_to = health.roll_back(state)
    ctx.critic_updates = state.critic_updates
    evaluator.load_state_dict(state.extra)
    evaluator.reset_guard()
    tag = health.tag(round_index, back_to, reason)
    log.warning("rank %d: rollback %d at %s", health.rank, health.rollbacks, next(iter(tag.values())))
    if logger is not None:
        logger.set_tags(tag)
        logger.log_metrics({"health/rollbacks": health.rollbacks, "health/lr_scale": health.lr_scale}, round_index,
                           always=True)
        # The rounds trained again up to here are not logged a second time: each step keeps one value.
        logger.skip_through(round_index)


class ThroughputMeter:
    """Training throughput over a logging window, counting only time spent in rounds.

    `perf/real_samples_per_s`: real samples the round's phases drew per second of training,
    all workers together (batches_per_round x batch_size x workers: one batch per critic
    update, plus one per generator update when the method's G reads reals, as GMMN's does). Eval, checkpoint and
    logging time are left out, so the figure is the step's speed, not the run's.
    """

    def __init__(self, reals_per_round: int):
        self.reals_per_round = reals_per_round
        self.rounds, self.seconds = 0, 0.0

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """Time one round on the host; read_and_reset adds the device's queued work."""
        start = time.perf_counter()
        yield
        self.seconds += time.perf_counter() - start
        self.rounds += 1

    def read_and_reset(self) -> dict[str, float]:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            # Queued GPU work belongs to the window's rounds: wait for it, and count it.
            start = time.perf_counter()
            torch.cuda.synchronize()
            self.seconds += time.perf_counter() - start
        seconds = max(self.seconds, 1e-9)
        reading = {"perf/real_samples_per_s": self.rounds * self.reals_per_round / seconds,
                   "perf/rounds_per_s": self.rounds / seconds}
        self.rounds, self.seconds = 0, 0.0
        return reading


class EvalMeter:
    """What in-training evaluation costs this process, from the start of its loop.

    `perf/eval_s`: seconds spent evaluating (sampling, features, scoring, the stopping
    rule, the grid), plus building the evaluator, which computes the real side's features
    when they are not cached on disk yet; `perf/eval_share`: that over the seconds since
    the loop began (data, models, training, checkpoints, evals: all but Ray's start-up).
    Host wall time: an evaluation ends with its metrics on the host, so the device's work
    is inside it."""

    def __init__(self) -> None:
        self.started_s = time.perf_counter()
        self.eval_s = 0.0

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.eval_s += time.perf_counter() - start

    def read(self) -> dict[str, float]:
        elapsed_s = max(time.perf_counter() - self.started_s, 1e-9)
        return {"perf/eval_s": self.eval_s, "perf/eval_share": self.eval_s / elapsed_s}


class MemoryMeter:
    """`perf/private_memory_growth_mb`: the most this process's private resident memory
    (RssAnon: its own heap, not the shared pages of Ray's object store that reading a block
    maps in) has risen, sampled once a round, above what it was when the loop began, before
    the dataset was read. An in-memory dataset shows up whole in it, a streamed one as its
    batches in flight. Linux only (/proc); elsewhere no reading."""

    def __init__(self) -> None:
        self.start_mb = self.private_mb()
        self.most_mb = self.start_mb

    @staticmethod
    def private_mb() -> float | None:
        """Private resident memory now, MiB (RssAnon in /proc/self/status, in kB)."""
        try:
            lines = Path("/proc/self/status").read_text().splitlines()
        except OSError:
            return None
        kilobytes = [int(line.split()[1]) for line in lines if line.startswith("RssAnon:")]
        return kilobytes[0] / 1024 if kilobytes else None

    def sample(self) -> None:
        now = self.private_mb()
        if now is not None and self.most_mb is not None:
            self.most_mb = max(self.most_mb, now)

    def read(self) -> dict[str, float]:
        if self.start_mb is None:
            return {}
        return {"perf/private_memory_growth_mb": self.most_mb - self.start_mb}


def critic_updates_per_round(state: WorkerState, sched) -> int:
    """d_steps, or none for a method without a critic."""
    return sched.d_steps if state.method.critic_group else 0


def batches_per_round(state: WorkerState, sched) -> int:
    """Real batches one round draws: one per critic update, one per generator update
    when the method's generator reads reals."""
    return critic_updates_per_round(state, sched) + (sched.g_steps if state.method.generator_needs_reals() else 0)


def next_batch(batches, device: torch.device) -> dict[str, torch.Tensor]:
    """The next batch ({"x", "y"} and a task's {"c", "c_y"}) on the device."""
    return {key: value.to(device, non_blocking=True) for key, value in next(batches).items()}


def train_one_round(state: WorkerState, batches, sched, ctx: PhaseContext) -> dict[str, torch.Tensor]:
    """d_steps critic updates on fresh real batches, then g_steps generator updates."""
    method = state.method

    def critic_update() -> dict[str, torch.Tensor]:
        metrics = run_phase(method.critic_loss, state.players, method.critic_group, state.optimizers["d"],
                            next_batch(batches, ctx.device), ctx, "loss/d",
                            after_step=lambda view: method.after_critic_update(view, ctx))
        state.critic_updates += 1
        ctx.critic_updates = state.critic_updates
        return metrics

    def generator_update() -> dict[str, torch.Tensor]:
        batch = next_batch(batches, ctx.device) if method.generator_needs_reals() else None
        return run_phase(method.generator_loss, state.players, method.generator_group, state.optimizers["g"],
                         batch, ctx, "loss/g")

    return run_round(critic_updates_per_round(state, sched), sched.g_steps, critic_update, generator_update)
