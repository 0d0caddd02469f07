"""MMD-GAN with a learned kernel (Li et al. 2017; the repulsive loss of Wang et al. 2019).

Players G and a feature critic: D's network read at its penultimate layer, so the
kernel is evals' Gaussian mixture on learned features. The critic minimises the
repulsive loss (zerosum.losses.mmd_gan_critic_loss: it spreads real features apart and
gathers fakes, which D cannot inflate the way it can inflate -MMD^2); G minimises MMD^2
between the critic's features of fakes and of reals.
"""

from __future__ import annotations

from torch import nn

from zerosum.losses import mmd2_loss, mmd_gan_critic_loss
from zerosum.methods.base import Batch, Losses, Method, PhaseContext, Players, fakes_and_labels
from zerosum.train.build import build_discriminator_for, build_generator_for


class FeatureCritic(nn.Module):
    """D's network as a feature map: forward(x) = D.features(x), float (N, F).

    A module of its own so that DDP wraps the call the critic phase makes (a DDP wrapper
    only synchronises gradients of its forward, not of other methods of its module)."""

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        # The logit head is never used: DDP must not hold parameters that get no gradient.
        discriminator.head = nn.Identity()
        self.discriminator = discriminator

    def forward(self, x, y=None):
        return self.discriminator.features(x)


class MmdGanMethod(Method):
    name = "mmd-gan"

    def build(self, sample_shape, num_classes) -> Players:
        return {"g": build_generator_for(self.spec, sample_shape, num_classes),
                "d": FeatureCritic(build_discriminator_for(self.spec, sample_shape, num_classes))}

    def generator_needs_reals(self) -> bool:
        return True

    def critic_loss(self, players: Players, batch: Batch, ctx: PhaseContext) -> Losses:
        reals = batch["x"]
        fakes, _ = fakes_and_labels(players, ctx, len(reals))
        real_features = players["d"](reals).float()
        fake_features = players["d"](fakes.to(reals.dtype)).float()
        loss = mmd_gan_critic_loss(real_features, fake_features)
        return {"loss": loss}

    def generator_loss(self, players: Players, batch: Batch, ctx: PhaseContext) -> Losses:
        fakes, _ = fakes_and_labels(players, ctx, self.spec.schedule.fake_batch_size)
        critic = players["d"]
        loss = mmd2_loss(critic(fakes).float(), critic(batch["x"]).float())
        return {"loss": loss, "g/mmd2_features": loss.detach()}
