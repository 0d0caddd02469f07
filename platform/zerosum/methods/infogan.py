"""InfoGAN (Chen et al. 2016): a GAN whose G also takes latent codes c, and a Q head that
predicts c back from G(z, c), so that c is tied to what G draws.

Players G, D and Q. Q is a small head on D's features. The critic phase trains D as
in the GAN; the generator phase trains G and Q on G's adversarial loss plus
`model.codes.weight` (lambda) times the mutual-information terms: the cross-entropy of
the categorical code and the Gaussian negative log-likelihood of the continuous codes.
D's trunk learns from the adversarial loss only (it is frozen in the generator phase);
the paper shares it with Q, which here reads it as features.
"""

from __future__ import annotations

import torch
from torch import nn

from zerosum.latent import mutual_information_loss
from zerosum.methods.base import Batch, Losses, PhaseContext, Players
from zerosum.methods.gan import GanMethod
from zerosum.train.build import build_discriminator_for, build_generator_for

Q_HIDDEN = 128


class QHead(nn.Module):
    """features float (N, F) -> (category logits (N, K), continuous means (N, C), log stds (N, C))."""

    def __init__(self, feature_dim: int, categorical: int, continuous: int):
        super().__init__()
        self.categorical, self.continuous = categorical, continuous
        self.net = nn.Sequential(nn.Linear(feature_dim, Q_HIDDEN), nn.LeakyReLU(0.2),
                                 nn.Linear(Q_HIDDEN, categorical + 2 * continuous))

    def forward(self, features: torch.Tensor):
        out = self.net(features)
        k, c = self.categorical, self.continuous
        return out[:, :k], out[:, k:k + c], out[:, k + c:]


class InfoGanMethod(GanMethod):
    name = "infogan"

    def build(self, sample_shape, num_classes) -> Players:
        d = build_discriminator_for(self.spec, sample_shape, num_classes)
        codes = self.spec.model.codes
        return {"g": build_generator_for(self.spec, sample_shape, num_classes), "d": d,
                "q": QHead(d.feature_dim, codes.categorical, codes.continuous)}

    def generator_loss(self, players: Players, batch: Batch | None, ctx: PhaseContext) -> Losses:
        n = self.spec.schedule.fake_batch_size
        z, codes = ctx.noise.sample_with_codes(n, ctx.noise_rng, ctx.device)
        fakes = players["g"](z, None)
        d = players["d"]
        # One pass of D's trunk (one augmentation draw) serves the adversarial term and Q.
        features = d.features(self.judged(fakes, ctx))
        out = self.adversarial(d, fakes, None, batch, ctx, fake_features=features)
        logits, mean, log_std = players["q"](features.float())
        info = mutual_information_loss(logits, mean, log_std, codes.index if codes.onehot.shape[1] else None,
                                       codes.continuous)
        out["loss"] = out["loss"] + self.spec.model.codes.weight * info.total
        return {**out, "info/categorical": info.categorical.detach(), "info/continuous": info.continuous.detach()}
