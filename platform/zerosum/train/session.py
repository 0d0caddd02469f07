"""Where the training loop runs: the `Session` protocol and its Ray Train implementation.

The loop asks a session for its rank, world size and device, to wrap a model for
data-parallel training, for the checkpoint to resume from, for its shard of a streamed
dataset (`data.streaming`), and to report. Ray
Train workers use `RayTrainSession`; single-process Tune trials use
`zerosum.tune.trial.TuneSession`; `LocalSession` runs the loop in the calling process
(tests, benchmarks). Both build on `InProcessSession`. The loop never asks which one it has.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Protocol

import ray.train
import ray.train.torch
import torch
from torch import nn

from zerosum.config import DataSpec
from zerosum.streaming import STREAM
from zerosum.train.checkpoint import folder_name


class Session(Protocol):
    """Where the loop runs: rank, device, checkpoints in and reports out."""

    rank: int
    world_size: int
    device: torch.device

    def prepare_model(self, model: nn.Module) -> nn.Module: ...

    def get_checkpoint(self): ...

    def report(self, metrics: dict[str, Any], checkpoint) -> None: ...

    def dataset_shard(self, data: DataSpec, seed: int): ...


class RayTrainSession:
    """A Ray Train worker: DDP wrappers, ray.train checkpoints and reports."""

    def __init__(self) -> None:
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        # Each rank keeps its own BN running stats (no buffer sync per forward), as DCGANs
        # without SyncBN usually do; parameters are still all-reduced. torch 2.14 names this
        # forward_sync_buffers (broadcast_buffers is deprecated); it still syncs buffers once
        # at init, which changes nothing here: every rank builds the same initial weights.
        return ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"forward_sync_buffers": False})

    def get_checkpoint(self):
        return ray.train.get_checkpoint()

    def dataset_shard(self, data: DataSpec, seed: int):
        """This worker's shard of the streamed dataset the driver gave the trainer."""
        return ray.train.get_dataset_shard(STREAM)

    def report(self, metrics: dict[str, Any], checkpoint) -> None:
        name = folder_name(int(metrics["round"]), int(metrics.get("health/rollbacks", 0)))
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)


class InProcessSession:
    """The loop in the calling process: rank 0 of 1 on `device`, no DDP wrapper, the whole
    streamed dataset read by Ray Data from here. Subclasses say where checkpoints come from
    and reports go (`LocalSession`, `zerosum.tune.trial.TuneSession`)."""

    rank, world_size = 0, 1

    def __init__(self, device: torch.device | None = None):
        self.device = device if device is not None else torch.device("cpu")

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device)

    def dataset_shard(self, data: DataSpec, seed: int):
        from zerosum.streaming import streamed_dataset

        return streamed_dataset(data, seed)


class LocalSession(InProcessSession):
    """The loop in this process without Ray Train or Tune (tests and benchmarks).

    Reported checkpoints are kept as Ray Train keeps them, each in
    `storage/<folder name>` (copied out of the loop's temporary folder), and every
    report's metrics in `reports`, newest last, with a monotonic `time` stamp.

    storage: where checkpoints go; None keeps the reports' metrics only.
    resume_from: the checkpoint folder `get_checkpoint` returns (None: a fresh run)."""

    def __init__(self, storage: Path | None = None, resume_from: Path | None = None,
                 device: torch.device | None = None):
        super().__init__(device)
        self.storage, self.resume_from = storage, resume_from
        self.reports: list[dict[str, Any]] = []

    def get_checkpoint(self):
        return None if self.resume_from is None else ray.train.Checkpoint(str(self.resume_from))

    def report(self, metrics: dict[str, Any], checkpoint) -> None:
        name = folder_name(int(metrics["round"]), int(metrics.get("health/rollbacks", 0)))
        if self.storage is not None:
            shutil.copytree(checkpoint.path, self.storage / name)
        self.reports.append({**metrics, "folder": name, "time": time.monotonic()})
