"""DCGAN G and D (Radford et al. 2016) for square images, optionally class-conditional.

G: linear projection to (C0, s0, s0) + BN + ReLU, then stride-2 transposed convs + BN + ReLU
up to the image, tanh/sigmoid output. D mirrors it with stride-2 convs + LeakyReLU(0.2), BN on
every conv but the first, and a linear (projection) head on the flattened features, which is
DCGAN's final full-size conv written as a linear so the projection can use the same features.
"""

from __future__ import annotations

import torch
from torch import nn

from zerosum.models.conditional import LabelConcat, ProjectionHead
from zerosum.models.layers import (
    MinibatchStd,
    apply_spectral_norm,
    check_batch,
    hidden_block,
    init_dcgan_weights,
    make_output,
)

# side -> (start side s0, number of 2x up/downsamplings): 28 = 7*2*2, 32 = 4*2*2*2, 8 = 4*2
# (scikit-learn digits), 14 = 7*2 (the first stage of method staged).
SPATIAL_PLANS: dict[int, tuple[int, int]] = {
    8: (4, 1),
    14: (7, 1),
    16: (4, 2),
    28: (7, 2),
    32: (4, 3),
    64: (4, 4),
}


def dcgan_plan(sample_shape: tuple[int, ...]) -> tuple[int, int]:
    """(s0, n_scales) for a (C, H, W) sample shape; ValueError naming the supported sizes."""
    sides = ", ".join(f"{s}x{s}" for s in SPATIAL_PLANS)
    if len(sample_shape) != 3 or sample_shape[1] != sample_shape[2]:
        raise ValueError(
            f"sample_shape={tuple(sample_shape)} is not supported by arch='dcgan': it needs "
            f"square images (C, H, W) with H = W in {{{sides}}}; use arch='mlp' for flat data"
        )
    if sample_shape[1] not in SPATIAL_PLANS:
        raise ValueError(
            f"sample_shape={tuple(sample_shape)}: arch='dcgan' supports spatial sizes {sides}"
        )
    return SPATIAL_PLANS[sample_shape[1]]


def _block(
    conv: nn.Module, channels: int, activation: str, batch_norm: bool, dropout: float
) -> list[nn.Module]:
    """conv [+ BN2d] + activation [+ dropout]."""
    return hidden_block(conv, nn.BatchNorm2d(channels) if batch_norm else None, activation, dropout)


class DCGANGenerator(nn.Module):
    """z: float (N, z_dim), y: long (N,) | None -> float (N, C, H, W).

    Channels halve at each upsampling: base_channels * 2**(n_scales - 1) at s0 x s0, ...,
    base_channels just before the output conv. Conditional: label embedding joins z in the
    first projection.
    """

    def __init__(
        self,
        sample_shape: tuple[int, int, int],
        z_dim: int,
        num_classes: int,
        base_channels: int,
        activation: str,
        output: str,
        batch_norm: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        s0, n_scales = dcgan_plan(sample_shape)
        self.sample_shape = tuple(sample_shape)
        self.z_dim = z_dim
        self.num_classes = num_classes
        chans = [base_channels * 2 ** (n_scales - 1 - i) for i in range(n_scales)]
        self.label = LabelConcat(z_dim, num_classes)
        # The bias is dropped wherever BN follows, since BN's shift cancels it.
        project = nn.Sequential(
            nn.Linear(self.label.out_dim, chans[0] * s0 * s0, bias=not batch_norm),
            nn.Unflatten(1, (chans[0], s0, s0)),
        )
        layers = _block(project, chans[0], activation, batch_norm, dropout)
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            up = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=not batch_norm)
            layers += _block(up, c_out, activation, batch_norm, dropout)
        layers += [nn.ConvTranspose2d(chans[-1], sample_shape[0], 4, 2, 1), make_output(output)]
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_batch("z", z, (self.z_dim,))
        return self.net(self.label(z, y))


class DCGANDiscriminator(nn.Module):
    """x: float (N, C, H, W), y: long (N,) | None -> logits float (N,).

    Channels double at each downsampling from base_channels; no BN on the first conv.
    Conditional: projection head (Miyato & Koyama 2018) on the flattened features.
    """

    def __init__(
        self,
        sample_shape: tuple[int, int, int],
        num_classes: int,
        base_channels: int,
        activation: str,
        dropout: float,
        batch_norm: bool,
        spectral_norm: bool,
        minibatch_std: bool = False,
    ) -> None:
        super().__init__()
        s0, n_scales = dcgan_plan(sample_shape)
        self.sample_shape = tuple(sample_shape)
        self.num_classes = num_classes
        chans = [sample_shape[0]] + [base_channels * 2**i for i in range(n_scales)]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:])):
            use_bn = batch_norm and i > 0
            down = nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not use_bn)
            layers += _block(down, c_out, activation, use_bn, dropout)
        self.body = nn.Sequential(*layers, nn.Flatten(1))
        # Minibatch std (Karras et al. 2018) on the flattened features, just before the head.
        self.minibatch_std = MinibatchStd() if minibatch_std else None
        self.feature_dim = chans[-1] * s0 * s0 + (1 if minibatch_std else 0)
        self.head = ProjectionHead(self.feature_dim, num_classes)
        init_dcgan_weights(self)
        # After init, so the parametrization's original weight is the DCGAN-initialised one.
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x), y)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """D's penultimate features, float (N, feature_dim): what feature matching, MMD-GAN's
        critic and InfoGAN's Q head read."""
        check_batch("x", x, self.sample_shape)
        phi = self.body(x)
        return phi if self.minibatch_std is None else self.minibatch_std(phi)
