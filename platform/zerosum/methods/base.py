"""What every method is: its players, and what one update of each side computes.

A method names its players (modules, by name: "g", "d", "q"), which of them each
phase trains, and two losses: the critic phase's and the generator phase's. The
loop (train/loop.py) never asks which method it runs: a round is `d_steps` critic
phases and then `g_steps` generator phases, and a method without a critic
(`critic_group == ()`) has no critic phases.

Inside a phase (train/steps.run_phase) the players the phase trains are passed as
they are (DDP-wrapped in a Ray Train run) and every other player unwrapped and frozen
(`requires_grad_(False)`): the frozen side gets no gradient and joins no all-reduce.
A loss returns {"loss": scalar tensor, and any metrics as detached tensors}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from zerosum.catalog import METHOD_PLAYERS
from zerosum.config import JobSpec
from zerosum.train.build import NoiseSource
from zerosum.train.steps import unwrap

Players = dict[str, nn.Module]
Batch = dict[str, torch.Tensor | None]
Losses = dict[str, torch.Tensor]


@dataclass
class PhaseContext:
    """What a phase needs beside the players and the batch.

    noise_rng draws z, labels and codes; augment_rng draws DiffAugment's randomness (one
    generator per rank, seeded from the job, so a run is reproducible). critic_updates counts
    the critic updates done so far (lazy regularisation runs on every reg_every-th).
    """

    spec: JobSpec
    noise: NoiseSource
    noise_rng: torch.Generator
    augment_rng: torch.Generator
    device: torch.device
    autocast: Callable
    critic_updates: int = 0


class Method:
    """The base of every method: its players and its phases.

    A method in catalog.TRANSLATION_METHODS (pix2pix, CycleGAN) has a G that maps an input
    image batch to images: it is sampled on held-out inputs, judged against their targets
    and served with an image signature. Every other G maps z (and labels) to samples.
    """

    name = "method"

    def __init__(self, spec: JobSpec):
        self.spec = spec
        # Players each phase trains, from catalog.METHOD_PLAYERS; each group has one optimiser
        # (optim.g for the generator group, optim.d for the critic group).
        self.critic_group = METHOD_PLAYERS[self.name]["critic"]
        self.generator_group = METHOD_PLAYERS[self.name]["generator"]

    def build(self, sample_shape: tuple[int, ...], num_classes: int) -> Players:
        """Fresh players, by name. sample_shape: one sample's (C, H, W) or (D,)."""
        raise NotImplementedError

    def critic_loss(self, players: Players, batch: Batch, ctx: PhaseContext) -> Losses:
        raise NotImplementedError(f"method {self.name} has no critic")

    def generator_loss(self, players: Players, batch: Batch | None, ctx: PhaseContext) -> Losses:
        raise NotImplementedError

    def generator_needs_reals(self) -> bool:
        """Does the generator phase read a real batch (MMD, feature matching, rpgan)?"""
        return False

    def after_critic_update(self, players: Players, ctx: PhaseContext) -> None:
        """Runs after each critic optimiser step (WGAN's weight clipping)."""

    def sampler(self, players: Players, ema: nn.Module | None) -> nn.Module:
        """What users sample: EMA-G when the run keeps one, else G (unwrapped). G(z, y) for a
        generating method, G(inputs) for a translating one."""
        return ema if ema is not None else unwrap(players["g"])

    def inverse_translator(self, players: Players) -> nn.Module | None:
        """The module that maps a translator's outputs back to inputs, where the method has
        one (CycleGAN's F, unwrapped): the third column of its sample grids. None otherwise."""
        return None


def fakes_and_labels(players: Players, ctx: PhaseContext, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n samples of G (in whatever grad mode the phase set) and their labels for conditional G."""
    z = ctx.noise.sample(n, ctx.noise_rng, ctx.device)
    labels = ctx.noise.labels(n, ctx.noise_rng, ctx.device)
    return players["g"](z, labels), labels
