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
from zerosum.train.build import NoiseSource, apply_optimizer_spec, build_optimizer, lr_decay_factor, noise_source_for
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


RESEED_STRIDE = 1_000_003  # a prime, far from the per-rank offsets of the first seeds


def rank_seeds(spec: JobSpec, rank: int, epoch: int = 0) -> tuple[int, int]:
    """(noise seed, augmentation seed) of one rank; each rollback is a new `epoch`, with
    streams of its own."""
    offset = rank + 1 + RESEED_STRIDE * epoch
    return spec.schedule.seed * 7919 + offset, spec.schedule.seed * 104_729 + offset


def build_worker_state(spec: JobSpec, sample_shape, num_classes: int, session: Session) -> WorkerState:
    """The method's players (one DDP wrapper each), optimisers, EMA and noise for this rank."""
    method = method_for(spec)
    # The same seed on every rank gives identical initial weights (DDP also broadcasts them).
    torch.manual_seed(spec.schedule.seed)
    built = method.build(sample_shape, num_classes)
    ema = make_ema(built["g"]) if spec.model.ema_decay else None
    players = {name: compiled(session.prepare_model(module), spec.scaling) for name, module in built.items()}
    if ema is not None:
        ema.to(session.device)
    optimizers = {side: build_optimizer([p for name in names for p in players[name].parameters()],
                                        getattr(spec.optim, side))
                  for side, names in group_players(method).items()}
    noise_seed, augment_seed = rank_seeds(spec, session.rank)
    return WorkerState(
        method, players, optimizers, ema, noise_source_for(spec, num_classes),
        noise_rng=torch.Generator().manual_seed(noise_seed), augment_rng=torch.Generator().manual_seed(augment_seed),
    )


def compiled(module: nn.Module, scaling) -> nn.Module:
    """`module` through torch.compile when `scaling.compile`; compiling the DDP wrapper,
    not the model inside, lets DDP's bucketed all-reduce overlap the compiled backward."""
    if not scaling.compile:
        return module
    return torch.compile(module, mode=None if scaling.compile_mode == "default" else scaling.compile_mode)


def older_checkpoints(checkpoint) -> list:
    """The run's other checkpoints reported before `checkpoint`, newest first, as Ray
    Checkpoints on the same filesystem (the storage folder holds them side by side)."""
    import pyarrow.fs
    import ray.train

    filesystem = getattr(checkpoint, "filesystem", None) or pyarrow.fs.LocalFileSystem()
    path = str(checkpoint.path).rstrip("/")
    parent, name = path.rsplit("/", 1)
    listed = filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
    folders = [info.base_name for info in listed if info.type == pyarrow.fs.FileType.Directory]
    return [ray.train.Checkpoint(f"{parent}/{n}", filesystem=filesystem) for n in ckpt.newest_first(folders, name)]


def read_trusted_checkpoint(checkpoint, rank: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[str]]:
    """(state, this rank's rng or None, notes) from the newest checkpoint whose manifest holds.

    A checkpoint that fails its manifest is skipped for the one reported before it; each
    skip, and a fresh start when none holds, is a note for the run's warnings."""
    notes: list[str] = []
    for candidate in [checkpoint, *older_checkpoints(checkpoint)]:
        name = Path(str(candidate.path)).name
        with candidate.as_directory() as folder:
            problem = ckpt.checkpoint_problem(Path(folder))
            if problem is None:
                saved, rng = ckpt.read_checkpoint(Path(folder), rank)
                return saved, rng, notes + ([f"resumed from checkpoint {name} instead"] if notes else [])
        notes.append(f"checkpoint {name} failed verification and was skipped: {problem}")
    return None, None, notes + ["no checkpoint passed verification: training starts fresh from round 0"]


def load_model_state(state: WorkerState, saved: dict[str, Any]) -> None:
    """Put a checkpoint's players, optimisers, EMA, counters and extras into `state`."""
    for name, module in state.players.items():
        unwrap(module).load_state_dict(saved["players"][name])
    for name, optimizer in state.optimizers.items():
        optimizer.load_state_dict(saved["optimizers"][name])
    if state.ema is not None and saved["ema"] is not None:
        state.ema.load_state_dict(saved["ema"])
    state.rounds_done = int(saved["rounds_done"])
    state.critic_updates = int(saved.get("critic_updates", 0))
    state.extra = {k: v for k, v in saved.items() if k.startswith("extra/")}


def set_learning_rates(state: WorkerState, spec: JobSpec, lr_scale: float = 1.0) -> None:
    """The spec's optimiser hyperparameters on every param group, lrs times `lr_scale`
    (what rollbacks have cut them to) and optim.decay's factor for the round after
    `state.rounds_done`, so a resume or a rollback lands on the decayed lr at once."""
    factor = lr_scale * lr_decay_factor(spec.optim, state.rounds_done, spec.schedule.total_rounds)
    for side, optimizer in state.optimizers.items():
        apply_optimizer_spec(optimizer, getattr(spec.optim, side))
        for group in optimizer.param_groups:
            group["lr"] *= factor


def restore_worker_state(state: WorkerState, spec: JobSpec, session: Session) -> list[str]:
    """Load the newest trusted checkpoint, if any, then re-apply the spec's optimiser
    hyperparameters (a PBT exploit restores another trial's state under this trial's spec).
    -> notes on skipped checkpoints, for the run's warnings."""
    rank = session.rank
    checkpoint = session.get_checkpoint()
    notes: list[str] = []
    if checkpoint is not None:
        saved, rng, notes = read_trusted_checkpoint(checkpoint, rank)
        if saved is not None:
            load_model_state(state, saved)
            if rng is not None:
                ckpt.restore_rng(rng, state.noise_rng, state.augment_rng)
            log.info("rank %d resumed at round %d", rank, state.rounds_done)
        for note in notes:
            log.warning("rank %d: %s", rank, note)
    set_learning_rates(state, spec, float(state.extra.get(ckpt.HEALTH_KEY, {}).get("lr_scale", 1.0)))
    return notes
