"""What one worker trains and checkpoints, built from a spec and restored from a checkpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zerosum.config import JobSpec
from zerosum.train import checkpoint as ckpt
from zerosum.train.build import NoiseSource, apply_optimizer_spec, build_models, build_optimizer, noise_source_for
from zerosum.train.session import Session
from zerosum.train.steps import make_ema, unwrap

log = logging.getLogger(__name__)


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
    """Load the latest reported checkpoint, if any, then re-apply the spec's optimiser
    hyperparameters (a PBT exploit restores another trial's state under this trial's spec)."""
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
    apply_optimizer_spec(state.opt_g, spec.optim.g)
    apply_optimizer_spec(state.opt_d, spec.optim.d)
