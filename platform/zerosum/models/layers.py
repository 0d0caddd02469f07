"""Building blocks shared by the MLP and DCGAN models: activations, init, checks.

Imports torch only (see docs/architecture.md, "Boundaries").
"""

from __future__ import annotations

import torch
from torch import nn

from zerosum.catalog import ACTIVATION_NAMES as ACTIVATIONS
from zerosum.catalog import OUTPUT_NAMES as OUTPUTS

# DCGAN (Radford et al. 2016) uses slope 0.2 in D; we use it wherever leaky_relu is asked for.
LEAKY_SLOPE = 0.2


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise ValueError naming the argument and its allowed values."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed: {', '.join(allowed)}")


def make_activation(name: str) -> nn.Module:
    """A fresh hidden-layer activation module (never shared between layers or models)."""
    check_choice("activation", name, ACTIVATIONS)
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    if name == "sigmoid":
        return nn.Sigmoid()
    return nn.Tanh()


def hidden_block(layer: nn.Module, norm: nn.Module | None, activation: str, dropout: float) -> list[nn.Module]:
    """layer [+ norm] + activation [+ dropout]; dropout acts on hidden activations, as in
    DeepLearnToolbox (the seed) and DCGAN variants alike."""
    layers = [layer] + ([norm] if norm is not None else []) + [make_activation(activation)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


def make_output(name: str) -> nn.Module:
    """The generator's output squashing: tanh -> [-1, 1], sigmoid -> [0, 1], identity -> R."""
    check_choice("output", name, OUTPUTS)
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    return nn.Identity()


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN init, in place: conv/linear weights N(0, 0.02); BN weight N(1, 0.02); biases 0.

    Label embeddings keep their own init (see zerosum.models.conditional).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)


def apply_spectral_norm(module: nn.Module) -> None:
    """Spectral-normalise every conv, linear and embedding weight in `module` (Miyato et al. 2018).

    Uses the parametrization API: its forward clones the power-iteration vectors, so D can be
    called on reals and fakes before one backward without an in-place autograd error.
    """
    targets = [
        m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))
    ]
    for m in targets:
        nn.utils.parametrizations.spectral_norm(m)


def check_batch(name: str, tensor: torch.Tensor, trailing: tuple[int, ...]) -> None:
    """Raise ValueError unless `tensor` is (N, *trailing). Shape-only: no device sync."""
    if tuple(tensor.shape[1:]) != tuple(trailing) or tensor.dim() != len(trailing) + 1:
        want = ", ".join(["N", *map(str, trailing)])
        raise ValueError(f"{name} must have shape ({want}); got {tuple(tensor.shape)}")


class MinibatchStd(nn.Module):
    """Append the minibatch standard deviation as one extra feature (Karras et al. 2018; StyleGAN2).

    x: float (N, C, *spatial) -> (N, C + 1, *spatial); for flat vectors (N, F) -> (N, F + 1).
    The batch is split into groups of G samples, sample i in group i mod (N / G) (StyleGAN2's
    reshape(G, -1, ...)). For each group: the std over its members of every feature and pixel,
    sqrt(biased variance + 1e-8), averaged over features and pixels to one number, which every
    member of the group gets as its extra channel (constant over the pixels).

    Group size rule: G = min(group_size, N), as StyleGAN2 does. Where G does not divide N
    (StyleGAN2 fails there; zerosum's last batch of an epoch may be ragged, drop_last=False),
    G = N: one group, the whole minibatch, as in ProGAN's original layer.
    """

    # Inside the sqrt, as in StyleGAN2: keeps the gradient finite where a group's features agree.
    EPS = 1e-8

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        if int(group_size) != group_size or group_size < 1:
            raise ValueError(f"group_size must be an integer >= 1; got {group_size}")
        self.group_size = int(group_size)

    def group_for(self, n: int) -> int:
        """The group size used for a batch of n samples (the rule above)."""
        g = min(self.group_size, n)
        return g if n % g == 0 else n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"MinibatchStd needs (N, C, ...) or (N, F); got shape {tuple(x.shape)}")
        n, trailing = x.shape[0], x.shape[1:]
        g = self.group_for(n)
        y = x.reshape(g, n // g, *trailing)
        y = y - y.mean(dim=0)
        std = (y.square().mean(dim=0) + self.EPS).sqrt()      # (n/G, C, *spatial)
        stat = std.flatten(1).mean(dim=1)                     # (n/G,)
        # Sample i belongs to group i mod (n/G): repeating the n/G values G times matches.
        stat = stat.repeat(g).view(n, 1, *([1] * (x.dim() - 2)))
        return torch.cat([x, stat.expand(n, 1, *trailing[1:])], dim=1)
