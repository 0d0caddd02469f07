"""Collectives for evaluation across Ray Train workers (no-ops in a single process).

Every rank calls each of these at the same point: all-reduce of FeatureStats,
all-gather of feature rows, and a broadcast of rank 0's decision.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from evals.stats import FeatureStats


def distributed(world_size: int) -> bool:
    return world_size > 1 and dist.is_available() and dist.is_initialized()


def gather_rows(rows: torch.Tensor | None, world_size: int) -> torch.Tensor | None:
    """Concatenate every rank's (n, D) rows (n equal on all ranks) in rank order."""
    if rows is None or not distributed(world_size):
        return rows
    parts = [torch.empty_like(rows) for _ in range(world_size)]
    dist.all_gather(parts, rows.contiguous())
    return torch.cat(parts)


def merge_stats(stats: FeatureStats, world_size: int) -> FeatureStats:
    """All-reduce count, sum and outer sums: the statistics of every rank's features."""
    if not distributed(world_size):
        return stats
    flat = stats.to_tensor()
    dist.all_reduce(flat)
    return FeatureStats.from_tensor(flat, stats.dim)


def broadcast_from_rank0(value: Any, world_size: int) -> Any:
    if not distributed(world_size):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
