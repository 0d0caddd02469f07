"""Class conditioning: label embedding for G, projection head for D (Miyato & Koyama 2018)."""

from __future__ import annotations

import torch
from torch import nn


def check_labels(y: torch.Tensor | None, batch_size: int, num_classes: int) -> None:
    """Raise ValueError if a conditional model gets no labels or labels of the wrong shape.

    y: int64 (N,) in [0, num_classes). The range is not checked here because that would
    force a device sync every step; nn.Embedding raises on an out-of-range label.
    """
    if num_classes <= 0:
        return
    if y is None:
        raise ValueError(f"y is required: the model is conditional (num_classes={num_classes})")
    if y.dim() != 1 or y.shape[0] != batch_size:
        raise ValueError(f"y must have shape ({batch_size},); got {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"y must be an integer (long) tensor of class indices; got {y.dtype}")


# As wide as a one-hot code (what Mirza & Osindero 2014 feed G), capped for many-class data.
MAX_LABEL_EMBED_DIM = 128


def label_embed_dim(num_classes: int) -> int:
    """Width of G's label embedding: num_classes, at most MAX_LABEL_EMBED_DIM."""
    return min(num_classes, MAX_LABEL_EMBED_DIM)


class LabelConcat(nn.Module):
    """G's input: z concatenated with a learned label embedding (identity when unconditional).

    z: float (N, z_dim), y: long (N,) -> float (N, z_dim + embed_dim)
    """

    def __init__(self, z_dim: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        embed_dim = label_embed_dim(num_classes)
        # PyTorch's default N(0, 1) puts the label on the same scale as z ~ N(0, 1).
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes > 0 else None
        self.out_dim = z_dim + (embed_dim if num_classes > 0 else 0)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        check_labels(y, z.shape[0], self.num_classes)
        if self.embed is None:
            return z
        return torch.cat([z, self.embed(y)], dim=1)


class ProjectionHead(nn.Module):
    """D's output: logit = linear(phi) + sum(embed(y) * phi, dim=1); unconditional: linear(phi).

    phi: float (N, F) features of x, y: long (N,) -> logits float (N,)
    """

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.linear = nn.Linear(feature_dim, 1)
        self.embed = nn.Embedding(num_classes, feature_dim) if num_classes > 0 else None
        if self.embed is not None:
            # Small, so the class term starts no larger than the linear term (N(1) would swamp
            # it by ~sqrt(F)); not zero, since spectral norm divides by the weight's norm.
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, phi: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        check_labels(y, phi.shape[0], self.num_classes)
        logits = self.linear(phi).squeeze(1)
        if self.embed is None:
            return logits
        return logits + (self.embed(y) * phi).sum(dim=1)
