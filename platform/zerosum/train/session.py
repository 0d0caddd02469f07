"""Where the training loop runs: the `Session` protocol and its Ray Train implementation.

The loop asks a session for its rank, world size and device, to wrap a model for
data-parallel training, for the checkpoint to resume from, for its shard of a streamed
dataset (`data.streaming`), and to report. Ray
Train workers use `RayTrainSession`; single-process Tune trials use
`zerosum.tune.trial.TuneSession`. The loop never asks which one it has.
"""

from __future__ import annotations

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
