"""Building what a run trains, from a JobSpec: models, optimisers, noise. Pure torch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from zerosum.config import JobSpec, OptimizerSpec
from zerosum.models import build_discriminator, build_generator


def build_models(spec: JobSpec, sample_shape: tuple[int, ...], num_classes: int) -> tuple[nn.Module, nn.Module]:
    """G and D for the spec; conditional models get the dataset's class count."""
    classes = num_classes if spec.model.conditional else 0
    g, d = spec.model.g, spec.model.d
    generator = build_generator(
        g.arch, sample_shape=sample_shape, z_dim=g.z_dim, num_classes=classes, hidden=tuple(g.hidden),
        activation=g.activation, output=g.output, base_channels=g.base_channels,
        batch_norm=g.batch_norm, dropout=g.dropout,
    )
    discriminator = build_discriminator(
        d.arch, sample_shape=sample_shape, num_classes=classes, hidden=tuple(d.hidden),
        activation=d.activation, dropout=d.dropout, base_channels=d.base_channels,
        batch_norm=d.batch_norm, spectral_norm=d.spectral_norm,
    )
    return generator, discriminator


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


@dataclass
class NoiseSource:
    """Draws z (and fake labels) for G.

    distribution: 'normal' N(0,1); 'uniform' U(-1,1); 'normal-minmax' N(0,1) rows min-max
    scaled to [0,1] (MATLAB mapminmax, as in the seed). With pool_size, z is drawn from
    a fixed pool of that many vectors made once from `pool_seed` (the seed reuses 60,000).
    """

    z_dim: int
    distribution: str
    num_classes: int = 0
    pool_size: int | None = None
    pool_seed: int = 0

    def __post_init__(self) -> None:
        self.pool = None
        if self.pool_size:
            self.pool = self.fresh(self.pool_size, torch.Generator().manual_seed(self.pool_seed))

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
        """float32 (n, z_dim) on device: from the pool when there is one."""
        if self.pool is None:
            return self.fresh(n, generator).to(device)
        index = torch.randint(len(self.pool), (n,), generator=generator)
        return self.pool[index].to(device)

    def labels(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor | None:
        """Uniform class labels int64 (n,) for conditional G, else None."""
        if not self.num_classes:
            return None
        return torch.randint(self.num_classes, (n,), generator=generator).to(device)


def noise_source_for(spec: JobSpec, num_classes: int) -> NoiseSource:
    g = spec.model.g
    classes = num_classes if spec.model.conditional else 0
    return NoiseSource(g.z_dim, g.z_distribution, classes, g.z_pool_size, pool_seed=spec.schedule.seed)
