"""The training loop, shared by `zerosum run` (Ray Train workers) and Tune trials.

`train_loop_per_worker(config)` is what each Ray Train worker runs;
`train_worker(config, session)` is the same loop for any `Session` (a single-process
Tune trial passes a TuneSession from zerosum.campaign). There is no second loop.

config (a plain dict, as Ray passes it):
    job: the resolved JobSpec as a dict
    tracking_uri, run_id: where rank 0 logs (run_id None = no MLflow)
    fault: optional {"round", "rank", "marker"}: kill that worker once (tests)
    overrides from Tune (e.g. "optim.d.lr") are applied to `job` by the caller.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Protocol

import ray.train
import ray.train.torch
import torch
from torch import nn

from zerosum.config import JobSpec, job_to_yaml, validate_job
from zerosum.data import ShardedBatches, load_dataset
from zerosum.tracking import RunLogger
from zerosum.train import checkpoint as ckpt
from zerosum.train.evaluation import Evaluator
from zerosum.train.setup import NoiseSource, apply_lrs, build_models, build_optimizer, noise_source_for
from zerosum.train.steps import StepConfig, d_step, g_step, make_ema, run_round, unwrap, update_ema

log = logging.getLogger(__name__)


class Session(Protocol):
    """Where the loop runs: rank, device, checkpoints in and reports out."""

    rank: int
    world_size: int
    device: torch.device

    def prepare_model(self, model: nn.Module) -> nn.Module: ...

    def get_checkpoint(self): ...

    def report(self, metrics: dict[str, Any], checkpoint) -> None: ...


class RayTrainSession:
    """A Ray Train worker: DDP wrappers, ray.train checkpoints and reports."""

    def __init__(self) -> None:
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        # Each rank keeps its own BN running stats (no buffer broadcast per forward),
        # as DCGANs without SyncBN usually do; parameters are still all-reduced.
        return ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"broadcast_buffers": False})

    def get_checkpoint(self):
        return ray.train.get_checkpoint()

    def report(self, metrics: dict[str, Any], checkpoint) -> None:
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"round_{metrics['round']:07d}")


@dataclass
class WorkerState:
    """Everything one worker trains and checkpoints."""

    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: nn.Module | None
    noise: NoiseSource
    noise_rng: torch.Generator
    rounds_done: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def model_state(self) -> dict[str, Any]:
        return {
            "generator": unwrap(self.generator).state_dict(),
            "discriminator": unwrap(self.discriminator).state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rounds_done": self.rounds_done,
            **self.extra,
        }


def build_worker_state(spec: JobSpec, sample_shape, num_classes: int, session: Session) -> WorkerState:
    """Models (one DDP wrapper each), optimisers, EMA and noise for this rank."""
    # The same seed on every rank gives identical initial weights (DDP also broadcasts them).
    torch.manual_seed(spec.schedule.seed)
    generator, discriminator = build_models(spec, sample_shape, num_classes)
    ema = make_ema(generator) if spec.model.ema_decay else None
    generator = session.prepare_model(generator)
    discriminator = session.prepare_model(discriminator)
    if ema is not None:
        ema.to(session.device)
    rank = session.rank
    return WorkerState(
        generator, discriminator,
        build_optimizer(generator.parameters(), spec.optim.g),
        build_optimizer(discriminator.parameters(), spec.optim.d),
        ema, noise_source_for(spec, num_classes),
        noise_rng=torch.Generator().manual_seed(spec.schedule.seed * 7919 + rank + 1),
    )


def restore_worker_state(state: WorkerState, spec: JobSpec, session: Session) -> None:
    """Load the latest reported checkpoint, if any, then re-apply the config's lrs."""
    rank = session.rank
    checkpoint = session.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved, rng = ckpt.read_checkpoint(Path(folder), rank)
        unwrap(state.generator).load_state_dict(saved["generator"])
        unwrap(state.discriminator).load_state_dict(saved["discriminator"])
        if state.ema is not None and saved["ema"] is not None:
            state.ema.load_state_dict(saved["ema"])
        state.opt_g.load_state_dict(saved["opt_g"])
        state.opt_d.load_state_dict(saved["opt_d"])
        state.rounds_done = int(saved["rounds_done"])
        state.extra = {k: v for k, v in saved.items() if k.startswith("extra/")}
        if rng is not None:
            ckpt.restore_rng(rng, state.noise_rng)
        log.info("rank %d resumed at round %d", rank, state.rounds_done)
    apply_lrs(state.opt_g, spec.optim.g.lr)
    apply_lrs(state.opt_d, spec.optim.d.lr)


def autocast_factory(spec: JobSpec, device: torch.device) -> Callable:
    if spec.scaling.precision == "bf16" and device.type == "cuda":
        return partial(torch.autocast, device_type="cuda", dtype=torch.bfloat16)
    return nullcontext


def maybe_inject_fault(fault: dict | None, round_index: int, rank: int) -> None:
    """Kill this worker process once at the given round (fault-tolerance tests)."""
    if not fault or fault["round"] != round_index or fault["rank"] != rank:
        return
    marker = Path(fault["marker"])
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"killed rank {rank} at round {round_index}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def report(state: WorkerState, metrics: dict[str, float], spec: JobSpec, session: Session) -> None:
    """Every rank writes its share of a checkpoint and reports; Ray merges the folders."""
    rank = session.rank
    with tempfile.TemporaryDirectory(prefix="zerosum-ckpt-") as folder:
        ckpt.write_checkpoint(Path(folder), rank, state.model_state() if rank == 0 else None,
                              ckpt.rng_state(state.noise_rng), job_to_yaml(spec))
        checkpoint = ray.train.Checkpoint.from_directory(folder)
        session.report({**metrics, "round": state.rounds_done}, checkpoint)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: train G and D for `config["job"]` on this worker's shard."""
    train_worker(config, RayTrainSession())


def train_worker(config: dict[str, Any], session: Session) -> None:
    """Train G and D for the job in `config["job"]` on this session's shard."""
    spec = validate_job(config["job"], source="train_loop config", check_paths=False)
    rank, world_size, device = session.rank, session.world_size, session.device
    dataset = load_dataset(spec.data, "train", seed=spec.schedule.seed)
    state = build_worker_state(spec, dataset.sample_shape, dataset.num_classes, session)
    restore_worker_state(state, spec, session)
    torch.manual_seed(spec.schedule.seed * 7919 + rank + state.rounds_done)
    sched = spec.schedule
    batcher = ShardedBatches(dataset, sched.batch_size, rank, world_size, seed=sched.seed)
    batcher.epoch = state.rounds_done * sched.d_steps // max(1, batcher.batches_per_epoch())
    batches = iter(batcher)
    step_cfg = StepConfig(spec.loss.name, spec.loss.gp_weight, autocast_factory(spec, device))
    logger = RunLogger(config["tracking_uri"], config["run_id"]) if rank == 0 and config.get("run_id") else None
    evaluator = Evaluator(spec, dataset, rank, world_size, device, logger)
    evaluator.load_state_dict(state.extra)
    if logger is not None and state.rounds_done:
        logger.set_tags({"zerosum.resumed_from_round": str(state.rounds_done)})
    window_start, window_rounds = time.perf_counter(), 0
    while state.rounds_done < sched.total_rounds:
        round_index = state.rounds_done + 1
        maybe_inject_fault(config.get("fault"), round_index, rank)
        metrics = train_one_round(state, batches, sched, step_cfg, device)
        state.rounds_done = round_index
        if state.ema is not None:
            update_ema(state.ema, state.generator, spec.model.ema_decay)
        window_rounds += 1
        if round_index % sched.log_every_rounds == 0 or round_index == sched.total_rounds:
            elapsed = time.perf_counter() - window_start
            metrics["perf/images_per_s"] = window_rounds * sched.d_steps * sched.batch_size * world_size / elapsed
            if logger is not None:
                logger.log_metrics(metrics, round_index)
            window_start, window_rounds = time.perf_counter(), 0
        if evaluator.due(round_index):
            eval_metrics, stop_reason = evaluator.evaluate(state, round_index, metrics)
            state.extra = evaluator.state_dict()
            report(state, {**metrics, **eval_metrics}, spec, session)
            if stop_reason:
                break
        elif round_index % spec.checkpoint.every_rounds == 0:
            report(state, metrics, spec, session)


def train_one_round(state: WorkerState, batches, sched, step_cfg: StepConfig, device: torch.device) -> dict[str, float]:
    """d_steps D updates on fresh real batches, then g_steps G updates."""
    fake_batch = sched.fake_batch_size

    def d_update() -> dict[str, float]:
        reals, labels = next(batches)
        reals, labels = reals.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        z = state.noise.sample(len(reals), state.noise_rng, device)
        fake_labels = state.noise.labels(len(reals), state.noise_rng, device)
        real_labels = labels if fake_labels is not None else None
        return d_step(state.generator, state.discriminator, state.opt_d, reals, real_labels, z, fake_labels, step_cfg)

    def g_update() -> dict[str, float]:
        z = state.noise.sample(fake_batch, state.noise_rng, device)
        labels = state.noise.labels(fake_batch, state.noise_rng, device)
        return g_step(state.generator, state.discriminator, state.opt_g, z, labels, step_cfg)

    return run_round(sched.d_steps, sched.g_steps, d_update, g_update)
