"""Staged generation: a small image first, then a large one from it (the article's third
answer; in spirit LAPGAN, Denton et al. 2015, and StackGAN, Zhang et al. 2017).

Players: the first stage, G and D (model.g, model.d) at the input side of data.task
superres (14x14 at data.factor 2), trained as a GAN on the area-downsampled reals; the
second, T and D_t (model.translator, model.patch), trained as pix2pix on (downsampled
real, real) pairs. Each phase adds the two stages' losses; a sample is T(G(z)).
"""

from __future__ import annotations

import torch
from torch import nn

from zerosum.data import task_input_shape
from zerosum.methods.base import Batch, Losses, Method, PhaseContext, Players
from zerosum.methods.gan import GanMethod
from zerosum.methods.pix2pix import Pix2PixMethod
from zerosum.train.steps import unwrap


class StagedSampler(nn.Module):
    """z float (N, z_dim), y (ignored: the first stage is unconditional) -> T(G(z)) (N, C, S, S)."""

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.second(self.first(z, None))


def stages(players: Players) -> tuple[Players, Players]:
    """The players as each stage's method names them: ({g, d}, {g: T, d: D_t})."""
    return {"g": players["g"], "d": players["d"]}, {"g": players["t"], "d": players["d_t"]}


def merged(first: Losses, second: Losses, second_prefix: str) -> Losses:
    """One phase's losses: the sum, the first stage's metrics as they are, the second's renamed."""
    renamed = {second_prefix + key.split("/", 1)[1]: value for key, value in second.items() if key != "loss"}
    return {**first, **renamed, "loss": first["loss"] + second["loss"]}


class StagedMethod(Method):
    name = "staged"

    def __init__(self, spec):
        super().__init__(spec)
        self.first, self.second = GanMethod(spec), Pix2PixMethod(spec)

    def build(self, sample_shape, num_classes) -> Players:
        first = self.first.build(task_input_shape(self.spec.data, sample_shape), num_classes)
        second = self.second.build(sample_shape, num_classes)
        return {"g": first["g"], "d": first["d"], "t": second["g"], "d_t": second["d"]}

    def generator_needs_reals(self) -> bool:
        return True  # the second stage's pairs

    def sampler(self, players: Players, ema: nn.Module | None) -> nn.Module:
        return StagedSampler(ema if ema is not None else unwrap(players["g"]), unwrap(players["t"]))

    @staticmethod
    def small(batch: Batch) -> Batch:
        """The first stage's batch: the downsampled reals and their labels."""
        return {"x": batch["c"], "y": batch["y"]}

    def critic_loss(self, players: Players, batch: Batch, ctx: PhaseContext) -> Losses:
        first, second = stages(players)
        return merged(self.first.critic_loss(first, self.small(batch), ctx),
                      self.second.critic_loss(second, batch, ctx), "d_t/")

    def generator_loss(self, players: Players, batch: Batch | None, ctx: PhaseContext) -> Losses:
        first, second = stages(players)
        return merged(self.first.generator_loss(first, self.small(batch), ctx),
                      self.second.generator_loss(second, batch, ctx), "t/")
