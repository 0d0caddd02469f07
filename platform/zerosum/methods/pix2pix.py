"""pix2pix (Isola et al. 2017): paired image-to-image translation with a conditional GAN.

Players G (a translator: U-Net or residual net) and D (a PatchGAN that judges pairs).
D sees (input, target) as real and (input, G(input)) as fake, the input lifted to the
output's side and stacked along channels; G minimises its adversarial loss plus
`loss.l1_weight` (100 in the paper) times the L1 distance to the target.
With `loss.adversarial_weight: 0` G is trained on L1 alone and there is no D: the
paper's ablation, whose outputs are blurrier.
"""

from __future__ import annotations

import torch

from zerosum.data import task_input_shape
from zerosum.losses import d_loss, g_loss, l1_loss
from zerosum.methods.base import Batch, Losses, Method, PhaseContext, Players
from zerosum.train.build import build_pair_critic_for, build_translator_for
from zerosum.train.steps import unwrap


class Pix2PixMethod(Method):
    name = "pix2pix"

    def __init__(self, spec):
        super().__init__(spec)
        if spec.loss.adversarial_weight == 0:
            self.critic_group = ()  # L1 alone: no critic phases, and no D is built

    def build(self, sample_shape, num_classes) -> Players:
        input_shape = task_input_shape(self.spec.data, sample_shape)
        players = {"g": build_translator_for(self.spec, input_shape, sample_shape)}
        if self.critic_group:
            players["d"] = build_pair_critic_for(self.spec, input_shape[0], sample_shape)
        return players

    def generator_needs_reals(self) -> bool:
        return True  # the targets of L1, and the inputs themselves

    def critic_loss(self, players: Players, batch: Batch, ctx: PhaseContext) -> Losses:
        g, d = players["g"], players["d"]
        condition = unwrap(g).condition(batch["c"])
        fakes = g(batch["c"])  # G is frozen in this phase: no graph
        real_logits, fake_logits = d(condition, batch["x"]).float(), d(condition, fakes).float()
        return {"loss": d_loss(self.spec.loss.name, real_logits, fake_logits),
                "d/real": torch.sigmoid(real_logits.detach()).mean(),
                "d/fake": torch.sigmoid(fake_logits.detach()).mean()}

    def generator_loss(self, players: Players, batch: Batch | None, ctx: PhaseContext) -> Losses:
        g, loss = players["g"], self.spec.loss
        fakes = g(batch["c"])
        l1 = l1_loss(fakes, batch["x"])
        out = {"loss": loss.l1_weight * l1, "g/l1": l1.detach()}
        if self.critic_group:
            fake_logits = players["d"](unwrap(g).condition(batch["c"]), fakes).float()
            adversarial = g_loss(loss.name, fake_logits)
            out["loss"] = out["loss"] + loss.adversarial_weight * adversarial
            out |= {"g/adversarial": adversarial.detach(), "g/d_fake": torch.sigmoid(fake_logits.detach()).mean()}
        return out
