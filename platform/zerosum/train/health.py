"""Healing a diverged run: roll back to the last good checkpoint with lower learning rates.

With `schedule.on_divergence: rollback`, when the divergence guard fires at an eval (a
non-finite loss, or a D saturated for several evals), every rank
- reloads the last good checkpoint: the last one whose eval passed the guard, marked
  `extra/health.good` in its state; each rank keeps a CPU copy of the model state it
  reported then (the same tensors Ray stored), and after a restart the restored
  checkpoint serves if it is marked good;
- multiplies both lrs by `schedule.rollback_lr_factor`, for the rest of the run;
- re-seeds its noise and augmentation generators, so that the rounds it trains again do
  not draw the same noise that led to the divergence;
and goes on, at most `schedule.max_rollbacks` times. The lr scale and the count travel
in every checkpoint, so that a resumed run keeps them.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from zerosum.config import JobSpec
from zerosum.train.checkpoint import HEALTH_KEY
from zerosum.train.state import WorkerState, load_model_state, rank_seeds, set_learning_rates

ROLLBACK_TAG_PREFIX = "zerosum.rollback."


class Health:
    """The divergence policy of one rank: rollbacks so far, the lr scale, the last good state."""

    def __init__(self, spec: JobSpec, rank: int, saved_extra: dict[str, Any]):
        sched = spec.schedule
        self.spec, self.rank = spec, rank
        self.enabled = sched.on_divergence == "rollback"
        self.lr_factor, self.max_rollbacks = sched.rollback_lr_factor, sched.max_rollbacks
        saved = saved_extra.get(HEALTH_KEY, {})
        self.rollbacks = int(saved.get("rollbacks", 0))
        self.lr_scale = float(saved.get("lr_scale", 1.0))
        self.restored_good = bool(saved.get("good", False))
        # A CPU copy of the model state of the last checkpoint that passed the guard. No RNG
        # state: a rollback re-seeds every generator.
        self.last_good: dict[str, Any] | None = None

    def checkpoint_extra(self, good: bool) -> dict[str, Any]:
        """What a checkpoint records of the policy; `good`: its eval passed the guard."""
        return {HEALTH_KEY: {"good": good, "rollbacks": self.rollbacks, "lr_scale": self.lr_scale}}

    def remember(self, state: WorkerState) -> None:
        """Keep the state just reported (its eval passed the guard) as the rollback target."""
        if self.enabled:
            self.last_good = to_cpu(state.model_state())

    def remember_restored(self, state: WorkerState) -> None:
        """After a restart: the checkpoint just restored is the target if it was marked good."""
        if self.restored_good and state.rounds_done:
            self.remember(state)

    def refusal(self, reason: str) -> str | None:
        """Why this divergence ends the run (None: roll back)."""
        if not self.enabled:
            return reason
        if self.rollbacks >= self.max_rollbacks:
            return f"{reason} (after {self.rollbacks} rollbacks: schedule.max_rollbacks)"
        if self.last_good is None:
            return f"{reason} (no checkpoint has passed the divergence guard yet to roll back to)"
        return None

    def roll_back(self, state: WorkerState) -> int:
        """Load the last good state into `state`, cut the lrs and re-seed; -> its round."""
        assert self.last_good is not None
        self.rollbacks += 1
        self.lr_scale *= self.lr_factor
        # A copy: optimisers keep the tensors they load, and would update the snapshot in place.
        load_model_state(state, copy.deepcopy(self.last_good))
        set_learning_rates(state, self.spec, self.lr_scale)
        noise_seed, augment_seed = rank_seeds(self.spec, self.rank, epoch=self.rollbacks)
        state.noise_rng.manual_seed(noise_seed)
        state.augment_rng.manual_seed(augment_seed)
        torch.manual_seed(noise_seed + state.rounds_done)
        return state.rounds_done

    def tag(self, round_index: int, back_to: int, reason: str) -> dict[str, str]:
        return {f"{ROLLBACK_TAG_PREFIX}{self.rollbacks}":
                f"round {round_index}: {reason}; rolled back to round {back_to}, lrs x{self.lr_scale:g}"}


def to_cpu(value: Any) -> Any:
    """The same nested state with every tensor on the CPU (a snapshot must not hold GPU memory)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(v) for v in value)
    return value
