"""Generators and discriminators, built by name from plain options.

    G = build_generator("dcgan", sample_shape=(1, 28, 28), z_dim=100, num_classes=10)
    x = G(z, y)            # z: float (N, z_dim), y: long (N,) -> float (N, 1, 28, 28)
    D = build_discriminator("dcgan", sample_shape=(1, 28, 28), num_classes=10)
    logits = D(x, y)       # -> float (N,), no sigmoid: zerosum.losses takes logits

Unconditional models (num_classes=0) ignore y, so a training loop may always pass labels.
Every call builds fresh modules: G and D share nothing, so each gets its own DDP wrapper.
Imports torch only (see docs/architecture.md, "Boundaries").
"""

from __future__ import annotations

from torch import nn

from zerosum.catalog import ARCH_NAMES
from zerosum.models.dcgan import SPATIAL_PLANS, DCGANDiscriminator, DCGANGenerator, dcgan_plan
from zerosum.models.layers import ACTIVATIONS, OUTPUTS, check_choice
from zerosum.models.mlp import MLPDiscriminator, MLPGenerator

ARCHS = ARCH_NAMES

__all__ = [
    "ACTIVATIONS",
    "ARCHS",
    "OUTPUTS",
    "SPATIAL_PLANS",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "build_discriminator",
    "build_generator",
    "count_parameters",
]


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters, trainable or frozen (D is frozen during G's step)."""
    return sum(p.numel() for p in module.parameters())


def _check_int(name: str, value: object, minimum: int) -> None:
    # bool is an int subclass; True as a width is a user mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")


def _check_common(
    arch: str,
    sample_shape: tuple[int, ...],
    num_classes: int,
    hidden: tuple[int, ...],
    activation: str,
    dropout: float,
    base_channels: int,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validate the options G and D share; return sample_shape and hidden as tuples."""
    check_choice("arch", arch, ARCHS)
    check_choice("activation", activation, ACTIVATIONS)
    shape = tuple(sample_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(
            f"sample_shape={sample_shape!r} must be a non-empty tuple of positive integers, "
            "(C, H, W) for images or (D,) for flat data"
        )
    if arch == "dcgan":
        dcgan_plan(shape)
    _check_int("num_classes", num_classes, 0)
    _check_int("base_channels", base_channels, 1)
    widths = tuple(hidden)
    for i, width in enumerate(widths):
        _check_int(f"hidden[{i}]", width, 1)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout={dropout!r} must be in [0, 1)")
    return shape, widths


def build_generator(
    arch: str,
    *,
    sample_shape: tuple[int, ...],
    z_dim: int,
    num_classes: int = 0,
    hidden: tuple[int, ...] = (256, 256),
    activation: str = "relu",
    output: str = "tanh",
    base_channels: int = 64,
    batch_norm: bool = True,
    dropout: float = 0.0,
) -> nn.Module:
    """G(z: float (N, z_dim), y: long (N,) | None) -> float (N, *sample_shape).

    arch: "mlp" | "dcgan". hidden is for mlp only (() = a single linear layer, the seed's G);
    base_channels for dcgan only. batch_norm follows each hidden layer, never the output.
    output: "tanh" ([-1, 1] data) | "sigmoid" ([0, 1] data) | "identity".
    """
    shape, widths = _check_common(
        arch, sample_shape, num_classes, hidden, activation, dropout, base_channels
    )
    check_choice("output", output, OUTPUTS)
    _check_int("z_dim", z_dim, 1)
    if arch == "mlp":
        return MLPGenerator(
            shape, z_dim, num_classes, widths, activation, output, batch_norm, dropout
        )
    return DCGANGenerator(
        shape, z_dim, num_classes, base_channels, activation, output, batch_norm, dropout
    )


def build_discriminator(
    arch: str,
    *,
    sample_shape: tuple[int, ...],
    num_classes: int = 0,
    hidden: tuple[int, ...] = (256, 256),
    activation: str = "leaky_relu",
    dropout: float = 0.0,
    base_channels: int = 64,
    batch_norm: bool = True,
    spectral_norm: bool = False,
    minibatch_std: bool = False,
) -> nn.Module:
    """D(x: float (N, *sample_shape), y: long (N,) | None) -> logits float (N,).

    batch_norm follows every hidden layer except the first (DCGAN convention); spectral_norm
    wraps every linear, conv and embedding weight. Conditional D is a projection D.
    minibatch_std appends the minibatch standard deviation to D's features before the head.
    Every D has `features(x) -> (N, feature_dim)`, its penultimate layer.
    """
    shape, widths = _check_common(
        arch, sample_shape, num_classes, hidden, activation, dropout, base_channels
    )
    if arch == "mlp":
        return MLPDiscriminator(
            shape, num_classes, widths, activation, dropout, batch_norm, spectral_norm, minibatch_std
        )
    return DCGANDiscriminator(
        shape, num_classes, base_channels, activation, dropout, batch_norm, spectral_norm, minibatch_std
    )
