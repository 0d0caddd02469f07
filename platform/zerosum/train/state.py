"""What one worker trains and checkpoints, built from a spec and restored from a checkpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zerosum.config import JobSpec
from zerosum.methods import Method, method_for
from zerosum.train import checkpoint as ckpt
from zerosum.train.build import NoiseSource, apply_optimizer_spec, build_optimizer, noise_source_for
from zerosum.train.session import Session
from zerosum.train.steps import make_ema, unwrap

log = logging.getLogger(__name__)


@dataclass
class WorkerState:
    """Everything one worker trains and checkpoints, for any method.

    players: the method's modules by name ("g", "d", "q"), DDP-wrapped where they train.
    optimizers: one per side that has players ("g"; "d" unless the method has no critic).
    """

    method: Method
    players: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    ema: nn.Module | None
    noise: NoiseSource
    noise_rng: torch.Generator
    augment_rng: torch.Generator
    rounds_done: int = 0
    critic_updates: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def generator(self) -> nn.Module:
        return self.players["g"]

    @property
    def discriminator(self) -> nn.Module | None:
        return self.players.get("d")

    @property
    def opt_g(self) -> torch.optim.Optimizer:
        return self.optimizers["g"]

    @property
    def opt_d(self) -> torch.optim.Optimizer | None:
        return self.optimizers.get("d")

    def model_state(self) -> dict[str, Any]:
        """Every player and optimiser by name, EMA-G, the counters, and the extras."""
        return {
            "method": self.method.name,
            "players": {name: unwrap(module).state_dict() for name, module in self.players.items()},
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "ema": None if self.ema is None else self.ema.state_dict(),
            "rounds_done": self.rounds_done,
            "critic_updates": self.critic_updates,
            **self.extra,
        }


def group_players(method: Method) -> dict[str, tuple[str, ...]]:
    """{"g": generator-side players, "d": critic-side players} for the sides that have any."""
    groups = {"g": method.generator_group, "d": method.critic_group}
    return {side: names for side, names in groups.items() if names}


def build_worker_state(spec: JobSpec, sample_shape, num_classes: int, session: Session) -> WorkerState:
    """The method's players (one DDP wrapper each), optimisers, EMA and noise for this rank."""
    method = method_for(spec)
    # The same seed on every rank gives identical initial weights (DDP also broadcasts them).
    torch.manual_seed(spec.schedule.seed)
    built = method.build(sample_shape, num_classes)
    ema = make_ema(built["g"]) if spec.model.ema_decay else None
    players = {name: session.prepare_model(module) for name, module in built.items()}
    if ema is not None:
        ema.to(session.device)
    optimizers = {side: build_optimizer([p for name in names for p in players[name].parameters()],
                                        getattr(spec.optim, side))
                  for side, names in group_players(method).items()}
    rank = session.rank
    return WorkerState(
        method, players, optimizers, ema, noise_source_for(spec, num_classes),
        noise_rng=torch.Generator().manual_seed(spec.schedule.seed * 7919 + rank + 1),
        augment_rng=torch.Generator().manual_seed(spec.schedule.seed * 104_729 + rank + 1),
    )


def restore_worker_state(state: WorkerState, spec: JobSpec, session: Session) -> None:
    """Load the latest reported checkpoint, if any, then re-apply the spec's optimiser
    hyperparameters (a PBT exploit restores another trial's state under this trial's spec)."""
    rank = session.rank
    checkpoint = session.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved, rng = ckpt.read_checkpoint(Path(folder), rank)
        for name, module in state.players.items():
            unwrap(module).load_state_dict(saved["players"][name])
        for name, optimizer in state.optimizers.items():
            optimizer.load_state_dict(saved["optimizers"][name])
        if state.ema is not None and saved["ema"] is not None:
            state.ema.load_state_dict(saved["ema"])
        state.rounds_done = int(saved["rounds_done"])
        state.critic_updates = int(saved.get("critic_updates", 0))
        state.extra = {k: v for k, v in saved.items() if k.startswith("extra/")}
        if rng is not None:
            ckpt.restore_rng(rng, state.noise_rng, state.augment_rng)
        log.info("rank %d resumed at round %d", rank, state.rounds_done)
    for side, optimizer in state.optimizers.items():
        apply_optimizer_spec(optimizer, getattr(spec.optim, side))
