"""Fully connected G and D. With hidden=() and no batch norm they are the seed article's nets.

Image samples are flattened on the way into D and reshaped on the way out of G, so the same
models serve 2-D toy points (sample_shape (2,)) and MNIST (sample_shape (1, 28, 28)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zerosum.models.conditional import LabelConcat, ProjectionHead
from zerosum.models.layers import (
    MinibatchStd,
    apply_spectral_norm,
    check_batch,
    hidden_block,
    make_output,
)


def _hidden_block(
    in_dim: int, out_dim: int, activation: str, batch_norm: bool, dropout: float
) -> list[nn.Module]:
    """Linear [+ BN] + activation [+ dropout]; the bias is dropped where BN would cancel it."""
    linear = nn.Linear(in_dim, out_dim, bias=not batch_norm)
    return hidden_block(linear, nn.BatchNorm1d(out_dim) if batch_norm else None, activation, dropout)


class MLPGenerator(nn.Module):
    """z: float (N, z_dim), y: long (N,) | None -> float (N, *sample_shape).

    Conditional (num_classes > 0): a label embedding is concatenated to z.
    """

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        z_dim: int,
        num_classes: int,
        hidden: tuple[int, ...],
        activation: str,
        output: str,
        batch_norm: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        self.z_dim = z_dim
        self.num_classes = num_classes
        self.label = LabelConcat(z_dim, num_classes)
        layers: list[nn.Module] = []
        width = self.label.out_dim
        for h in hidden:
            layers += _hidden_block(width, h, activation, batch_norm, dropout)
            width = h
        layers += [nn.Linear(width, math.prod(self.sample_shape)), make_output(output)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_batch("z", z, (self.z_dim,))
        flat = self.net(self.label(z, y))
        return flat.reshape(z.shape[0], *self.sample_shape)


class MLPDiscriminator(nn.Module):
    """x: float (N, *sample_shape), y: long (N,) | None -> logits float (N,).

    Batch norm, when on, follows every hidden linear except the first (DCGAN convention:
    no BN on D's input layer). Conditional: projection head (Miyato & Koyama 2018).
    """

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        num_classes: int,
        hidden: tuple[int, ...],
        activation: str,
        dropout: float,
        batch_norm: bool,
        spectral_norm: bool,
        minibatch_std: bool = False,
    ) -> None:
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        width = math.prod(self.sample_shape)
        for i, h in enumerate(hidden):
            layers += _hidden_block(width, h, activation, batch_norm and i > 0, dropout)
            width = h
        self.body = nn.Sequential(*layers)
        # Minibatch std (Karras et al. 2018) on the flattened features, just before the head.
        self.minibatch_std = MinibatchStd() if minibatch_std else None
        self.feature_dim = width + (1 if minibatch_std else 0)
        self.head = ProjectionHead(self.feature_dim, num_classes)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x), y)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """D's penultimate features, float (N, feature_dim): what feature matching, MMD-GAN's
        critic and InfoGAN's Q head read."""
        check_batch("x", x, self.sample_shape)
        phi = self.body(x.flatten(1))
        return phi if self.minibatch_std is None else self.minibatch_std(phi)
