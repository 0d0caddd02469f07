"""Building what a run trains, from a JobSpec: models, optimisers, noise. Pure torch."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from zerosum.config import JobSpec, OptimizerSpec, OptimSpec
from zerosum.latent import LatentCodes, SampledCodes
from zerosum.models import build_discriminator, build_generator
from zerosum.models.translation import PairDiscriminator, PatchDiscriminator, Translator, build_translator


def build_generator_for(spec: JobSpec, sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """G for the spec: its input is z (and InfoGAN's codes); conditional G gets the classes."""
    classes = num_classes if spec.model.conditional else 0
    g = spec.model.g
    return build_generator(
        g.arch, sample_shape=sample_shape, z_dim=generator_input_dim(spec),
        num_classes=classes, hidden=tuple(g.hidden), activation=g.activation, output=g.output,
        base_channels=g.base_channels, batch_norm=g.batch_norm, dropout=g.dropout,
    )


def packed_shape(sample_shape: tuple[int, ...], pack: int) -> tuple[int, ...]:
    """What a packing D sees: `pack` samples stacked along channels (C, H, W) or features (D,)."""
    return (sample_shape[0] * pack, *sample_shape[1:])


def build_discriminator_for(spec: JobSpec, sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """D for the spec, sized for packed inputs (PacGAN) when model.d.pack > 1."""
    classes = num_classes if spec.model.conditional else 0
    d = spec.model.d
    return build_discriminator(
        d.arch, sample_shape=packed_shape(sample_shape, d.pack), num_classes=classes, hidden=tuple(d.hidden),
        activation=d.activation, dropout=d.dropout, base_channels=d.base_channels,
        batch_norm=d.batch_norm, spectral_norm=d.spectral_norm, minibatch_std=d.minibatch_std,
    )


def build_translator_for(spec: JobSpec, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> Translator:
    """model.translator from input_shape (C, h, w) to output_shape (C', S, S)."""
    t = spec.model.translator
    return build_translator(t.arch, input_shape=input_shape, output_shape=output_shape, scale=spec.data.scale,
                            base_channels=t.base_channels, blocks=t.blocks, batch_norm=t.batch_norm, output=t.output)


def build_pair_critic_for(spec: JobSpec, condition_channels: int, image_shape: tuple[int, ...]) -> PairDiscriminator:
    """model.patch as pix2pix's D: judges (lifted input, image) pairs."""
    patch = spec.model.patch
    return PairDiscriminator(condition_channels, image_shape[0], image_shape[-1], patch.base_channels,
                             patch.batch_norm, patch.spectral_norm)


def build_patch_critic_for(spec: JobSpec, image_shape: tuple[int, ...]) -> PatchDiscriminator:
    """model.patch as an unconditional PatchGAN D (CycleGAN's, one per domain)."""
    patch = spec.model.patch
    return PatchDiscriminator(image_shape[0], image_shape[-1], patch.base_channels, patch.batch_norm,
                              patch.spectral_norm)


def build_models(spec: JobSpec, sample_shape: tuple[int, ...], num_classes: int) -> tuple[nn.Module, nn.Module]:
    """G and D for the spec (the players of method gan)."""
    return build_generator_for(spec, sample_shape, num_classes), build_discriminator_for(spec, sample_shape, num_classes)


# Each optimiser with the spec fields it takes: the registry behind optim.*.name.
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], tuple[str, ...]]] = {
    "adam": (torch.optim.Adam, ("lr", "betas", "weight_decay")),
    "adamw": (torch.optim.AdamW, ("lr", "betas", "weight_decay")),
    "sgd": (torch.optim.SGD, ("lr", "weight_decay", "momentum")),
    "rmsprop": (torch.optim.RMSprop, ("lr", "weight_decay", "momentum")),
}


def optimizer_hyperparams(spec: OptimizerSpec) -> dict[str, object]:
    """The spec's hyperparameters that its optimiser takes, as param-group keys."""
    _, keys = OPTIMIZERS[spec.name]
    return {key: tuple(spec.betas) if key == "betas" else getattr(spec, key) for key in keys}


def build_optimizer(params, spec: OptimizerSpec) -> torch.optim.Optimizer:
    """torch optimiser named by the spec; weight_decay is the L2 penalty (the seed's 1e-4)."""
    optimizer_class, _ = OPTIMIZERS[spec.name]
    return optimizer_class(params, **optimizer_hyperparams(spec))


def apply_optimizer_spec(optimizer: torch.optim.Optimizer, spec: OptimizerSpec) -> None:
    """Set every param group's hyperparameters (lr, betas, weight_decay, momentum) from the spec.

    Restoring an optimiser's state_dict brings back the saved hyperparameters with it;
    PBT mutates them through config (after an exploit the state is another trial's),
    so the trial's spec must win, for every field the optimiser takes, not only lr.
    """
    values = optimizer_hyperparams(spec)
    for group in optimizer.param_groups:
        group.update(values)


# Each lr decay as the multiplier of the spec's lrs at `progress` in [0, 1) of the run,
# from 1 at the start to `final` at its end: the registry behind optim.decay.
LR_DECAYS: dict[str, Callable[[float, float], float]] = {
    "constant": lambda progress, final: 1.0,
    "linear": lambda progress, final: 1.0 - (1.0 - final) * progress,
    "cosine": lambda progress, final: final + (1.0 - final) * (1.0 + math.cos(math.pi * progress)) / 2.0,
}


def lr_decay_factor(spec: OptimSpec, rounds_done: int, total_rounds: int) -> float:
    """What the lrs are multiplied by in the round after `rounds_done` of `total_rounds`.

    Progress is rounds_done / total_rounds, as torch's LinearLR and CosineAnnealingLR count
    steps: the first round trains at the spec's lrs, and the last at a factor one round's
    step above `optim.final_factor`. A function of the round, not a stateful scheduler, so
    a resume, a rollback or a PBT exploit lands on the right lr without a scheduler state.
    """
    return LR_DECAYS[spec.decay](rounds_done / total_rounds, spec.final_factor)


def generator_input_dim(spec: JobSpec) -> int:
    """Width of G's input: z, then InfoGAN's codes (one-hot categories, continuous codes).
    The same as NoiseSource.input_dim, without drawing a noise pool to learn it."""
    codes = spec.model.codes
    return spec.model.g.z_dim + codes.categorical + codes.continuous


@dataclass
class NoiseSource:
    """Draws G's input z (and fake labels, and InfoGAN's codes).

    distribution: 'normal' N(0,1); 'uniform' U(-1,1); 'normal-minmax' N(0,1) rows min-max
    scaled to [0,1] (MATLAB mapminmax, as in the seed). With pool_size, z is drawn from
    a fixed pool of that many vectors made once from `pool_seed` (the seed reuses 60,000).
    With codes, G's input is [z, one-hot category, continuous codes] (InfoGAN), of width
    z_dim + codes.dim.
    """

    z_dim: int
    distribution: str
    num_classes: int = 0
    pool_size: int | None = None
    pool_seed: int = 0
    codes: LatentCodes | None = None

    def __post_init__(self) -> None:
        self.pool = None
        if self.pool_size:
            self.pool = self.fresh(self.pool_size, torch.Generator().manual_seed(self.pool_seed))

    @property
    def input_dim(self) -> int:
        """Width of G's input: z, plus the codes when there are any."""
        return self.z_dim + (self.codes.dim if self.codes is not None else 0)

    def fresh(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """float32 (n, z_dim) drawn anew from the distribution."""
        if self.distribution == "uniform":
            return torch.rand(n, self.z_dim, generator=generator) * 2 - 1
        z = torch.randn(n, self.z_dim, generator=generator)
        if self.distribution == "normal-minmax":
            low, high = z.min(1, keepdim=True).values, z.max(1, keepdim=True).values
            z = (z - low) / (high - low)
        return z

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """float32 (n, input_dim) on device: from the pool when there is one, codes appended."""
        return self.sample_with_codes(n, generator, device)[0]

    def sample_with_codes(self, n: int, generator: torch.Generator,
                          device: torch.device) -> tuple[torch.Tensor, SampledCodes | None]:
        """(G's input float32 (n, input_dim), the codes in it or None) on device."""
        if self.pool is None:
            z = self.fresh(n, generator).to(device)
        else:
            z = self.pool[torch.randint(len(self.pool), (n,), generator=generator)].to(device)
        if self.codes is None:
            return z, None
        codes = self.codes.sample(n, generator, device)
        return torch.cat([z, codes.onehot, codes.continuous], dim=1), codes

    def labels(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor | None:
        """Uniform class labels int64 (n,) for conditional G, else None."""
        if not self.num_classes:
            return None
        return torch.randint(self.num_classes, (n,), generator=generator).to(device)


def noise_source_for(spec: JobSpec, num_classes: int) -> NoiseSource:
    g, codes = spec.model.g, spec.model.codes
    classes = num_classes if spec.model.conditional else 0
    latent = LatentCodes(codes.categorical, codes.continuous) if codes.categorical + codes.continuous else None
    return NoiseSource(g.z_dim, g.z_distribution, classes, g.z_pool_size, pool_seed=spec.schedule.seed,
                       codes=latent)
