"""In-training evaluation: sample, log a grid, compute metrics, apply the stopping rule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from zerosum.config import JobSpec
from zerosum.data import Dataset
from zerosum.samples import samples_to_image
from zerosum.train.steps import unwrap


def sampling_model(state) -> nn.Module:
    """EMA-G when the run keeps one, else G's module."""
    return state.ema if state.ema is not None else unwrap(state.generator)


@torch.no_grad()
def generate(model: nn.Module, noise, n: int, rng: torch.Generator, device: torch.device,
             batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n samples (CPU float32) from G in eval mode, with their labels for conditional G."""
    was_training = model.training
    model.eval()
    outputs, labels = [], []
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        y = noise.labels(size, rng, device)
        outputs.append(model(noise.sample(size, rng, device), y).float().cpu())
        if y is not None:
            labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(outputs), (torch.cat(labels) if labels else None)


class Evaluator:
    """Runs at eval rounds on every rank; rank 0 logs. Returns (metrics, stop reason)."""

    def __init__(self, spec: JobSpec, dataset: Dataset, rank: int, world_size: int,
                 device: torch.device, logger=None):
        self.spec, self.dataset = spec, dataset
        self.rank, self.world_size, self.device = rank, world_size, device
        self.logger = logger
        self.rng = torch.Generator().manual_seed(spec.schedule.seed + 104729)

    def due(self, round_index: int) -> bool:
        every = self.spec.eval.every_rounds
        return round_index == self.spec.schedule.total_rounds or bool(every and round_index % every == 0)

    def evaluate(self, state, round_index: int, train_metrics: dict[str, float]) -> tuple[dict[str, float], str | None]:
        if self.logger is not None:
            self.log_grid(state, round_index)
        losses = [train_metrics.get("loss/d", 0.0), train_metrics.get("loss/g", 0.0)]
        if not all(math.isfinite(v) for v in losses):
            return {}, "divergence: a loss is NaN or Inf"
        return {}, None

    def log_grid(self, state, round_index: int) -> None:
        model = sampling_model(state)
        grid_rng = torch.Generator().manual_seed(self.spec.schedule.seed)
        samples, _ = generate(model, state.noise, self.spec.eval.grid_size, grid_rng, self.device)
        reference = self.dataset.samples[:1000] if samples.dim() == 2 else None
        self.logger.log_samples(samples_to_image(samples, self.spec.data.scale, reference), round_index)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
