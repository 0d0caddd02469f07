"""The GAN (Goodfellow et al. 2014) with the stabilisers that win the mode-collapse benchmarks.

Players G and D. The critic phase trains D on reals and fakes; the generator phase trains
G through the frozen D. Each trick is a spec field, on its own or combined:

- loss.name: minimax, nonsaturating, hinge, lsgan, wgan-gp (with its gradient penalty),
  wgan (weight clipping to loss.clip after every D update), rpgan (relativistic pairing,
  R3GAN; G's loss reads D on the same reals, so the generator phase draws a real batch);
- loss.r1_gamma / loss.r2_gamma: gamma/2 E|grad D|^2 on reals / fakes, lazily every
  loss.reg_every critic updates and scaled by it (StyleGAN2);
- loss.g_objective feature-matching: G matches D's mean features (Salimans et al. 2016);
- model.d.pack: PacGAN (Lin et al. 2018), D judges `pack` samples stacked along channels;
- model.d.minibatch_std, model.d.spectral_norm: layers of D (see zerosum.models);
- augment: DiffAugment of reals and fakes in both phases, before packing.
"""

from __future__ import annotations

import torch

from zerosum.augment import diff_augment
from zerosum.losses import RELATIVISTIC_LOSSES, clip_weights_, d_loss, feature_matching_loss, g_loss, gradient_penalty
from zerosum.methods.base import Batch, Losses, Method, PhaseContext, Players, fakes_and_labels
from zerosum.regularizers import r1_penalty, r2_penalty
from zerosum.train.build import build_discriminator_for, build_generator_for
from zerosum.train.steps import unwrap


def pack(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C, ...) -> (N/k, k*C, ...): k consecutive samples become one (PacGAN)."""
    return x if k == 1 else x.reshape(x.shape[0] // k, k * x.shape[1], *x.shape[2:])


def augment(x: torch.Tensor, ctx: PhaseContext) -> torch.Tensor:
    """DiffAugment of a share `augment.probability` of the samples (all of them at 1)."""
    policy, probability = ctx.spec.augment.policy, ctx.spec.augment.probability
    if not policy.strip() or probability == 0:
        return x
    augmented = diff_augment(x, policy, ctx.augment_rng)
    if probability == 1:
        return augmented
    chosen = torch.rand(x.shape[0], generator=ctx.augment_rng) < probability
    return torch.where(chosen.to(x.device).view(-1, *[1] * (x.dim() - 1)), augmented, x)


class GanMethod(Method):
    name = "gan"

    def build(self, sample_shape, num_classes) -> Players:
        return {"g": build_generator_for(self.spec, sample_shape, num_classes),
                "d": build_discriminator_for(self.spec, sample_shape, num_classes)}

    def generator_needs_reals(self) -> bool:
        loss = self.spec.loss
        return loss.name in RELATIVISTIC_LOSSES or loss.g_objective == "feature-matching"

    def judged(self, x: torch.Tensor, ctx: PhaseContext) -> torch.Tensor:
        """What D sees of a batch: augmented, then packed."""
        return pack(augment(x, ctx), self.spec.model.d.pack)

    def critic_loss(self, players: Players, batch: Batch, ctx: PhaseContext) -> Losses:
        reals = batch["x"]
        fakes, labels = fakes_and_labels(players, ctx, len(reals))
        real_labels = batch["y"] if labels is not None else None
        real_in, fake_in = self.judged(reals, ctx), self.judged(fakes.to(reals.dtype), ctx)
        d = players["d"]
        real_logits, fake_logits = d(real_in, real_labels).float(), d(fake_in, labels).float()
        loss = d_loss(self.spec.loss.name, real_logits, fake_logits)
        loss = loss + self.penalties(unwrap(d), real_in, fake_in, real_labels, labels, ctx)
        return {"loss": loss, "d/real": torch.sigmoid(real_logits.detach()).mean(),
                "d/fake": torch.sigmoid(fake_logits.detach()).mean()}

    def penalties(self, d, real_in, fake_in, real_labels, fake_labels, ctx: PhaseContext) -> torch.Tensor:
        """WGAN-GP's penalty, and R1 / R2 on their lazy schedule, on what D saw."""
        loss = self.spec.loss
        total = torch.zeros((), device=real_in.device)
        if loss.name == "wgan-gp":
            n = min(len(real_in), len(fake_in))
            total = total + gradient_penalty(lambda x: d(x, None if real_labels is None else real_labels[:n]).float(),
                                             real_in[:n], fake_in[:n].detach(), weight=loss.gp_weight)
        if ctx.critic_updates % loss.reg_every == 0:
            if loss.r1_gamma > 0:
                total = total + r1_penalty(lambda x: d(x, real_labels).float(), real_in, loss.r1_gamma,
                                           interval=loss.reg_every)
            if loss.r2_gamma > 0:
                total = total + r2_penalty(lambda x: d(x, fake_labels).float(), fake_in, loss.r2_gamma,
                                           interval=loss.reg_every)
        return total

    def after_critic_update(self, players: Players, ctx: PhaseContext) -> None:
        if self.spec.loss.name == "wgan":
            clip_weights_(players["d"], self.spec.loss.clip)

    def generator_loss(self, players: Players, batch: Batch | None, ctx: PhaseContext) -> Losses:
        fakes, labels = fakes_and_labels(players, ctx, self.spec.schedule.fake_batch_size)
        return self.adversarial(players["d"], fakes, labels, batch, ctx)

    def adversarial(self, d, fakes: torch.Tensor, labels, batch: Batch | None, ctx: PhaseContext,
                    fake_features: torch.Tensor | None = None) -> Losses:
        """G's loss against the frozen D `d`, for fakes (and their labels). fake_features: D's
        features of the judged fakes when the caller has them already (InfoGAN's Q reads them)."""
        spec_loss = self.spec.loss
        if fake_features is None:
            fake_features = d.features(self.judged(fakes, ctx))
        real_labels = batch["y"] if batch is not None and labels is not None else None
        if spec_loss.g_objective == "feature-matching":
            real_features = d.features(self.judged(batch["x"], ctx))
            loss = feature_matching_loss(real_features, fake_features)
            return {"loss": loss, "g/feature_gap": loss.detach()}
        fake_logits = d.head(fake_features, labels).float()
        real_logits = None
        if spec_loss.name in RELATIVISTIC_LOSSES:
            real_logits = d(self.judged(batch["x"], ctx), real_labels).float()
        loss = g_loss(spec_loss.name, fake_logits, real_logits)
        return {"loss": loss, "g/d_fake": torch.sigmoid(fake_logits.detach()).mean()}
