"""CycleGAN (Zhu et al. 2017): unpaired translation between domains X and Y.

Players G: X -> Y, F: Y -> X (translators) and a PatchGAN critic per domain, D_Y and D_X.
A batch holds images of Y ("x", the data) and of X ("c", data.source), drawn apart, so no
pairing is ever seen. The critics train on LSGAN's loss (the paper's; loss.name) against
G(X) and F(Y); G and F train on their adversarial losses plus `loss.cycle_weight` (10)
times the cycle loss |F(G(x)) - x| + |G(F(y)) - y| and, optionally, `loss.identity_weight`
times |G(y) - y| + |F(x) - x|. The paper's pool of 50 past fakes for the critics is not
used: each critic sees the current fakes.

zerosum.losses' LSGAN generator loss is Mao et al.'s 0.5 E[(D(G(x)) - 1)^2]; the CycleGAN
paper's is E[(D(G(x)) - 1)^2] (its critics' keep the 0.5). G's adversarial terms are
scaled by ADVERSARIAL_SCALE so that cycle_weight 10 weighs the cycle as the paper's lambda 10 does.
"""

from __future__ import annotations

import torch

from zerosum.losses import cycle_consistency_loss, d_loss, g_loss, l1_loss
from zerosum.methods.base import Batch, Losses, Method, PhaseContext, Players
from zerosum.train.build import build_patch_critic_for, build_translator_for
from zerosum.train.steps import unwrap

# G's adversarial loss as the paper writes it, per loss.name (see the module docstring).
ADVERSARIAL_SCALE = {"lsgan": 2.0}


class CycleGanMethod(Method):
    name = "cyclegan"

    def build(self, sample_shape, num_classes) -> Players:
        shape = tuple(sample_shape)  # data.source is resized to this shape (config checks the channels)
        return {"g": build_translator_for(self.spec, shape, shape), "f": build_translator_for(self.spec, shape, shape),
                "d_y": build_patch_critic_for(self.spec, shape), "d_x": build_patch_critic_for(self.spec, shape)}

    def generator_needs_reals(self) -> bool:
        return True  # both domains' images are G's and F's inputs

    def inverse_translator(self, players: Players):
        return unwrap(players["f"])

    def critic_loss(self, players: Players, batch: Batch, ctx: PhaseContext) -> Losses:
        y, x = batch["x"], batch["c"]
        fake_y, fake_x = players["g"](x), players["f"](y)  # G and F are frozen here: no graph
        name = self.spec.loss.name
        real_y, fake_y_logits = players["d_y"](y).float(), players["d_y"](fake_y).float()
        real_x, fake_x_logits = players["d_x"](x).float(), players["d_x"](fake_x).float()
        loss = d_loss(name, real_y, fake_y_logits) + d_loss(name, real_x, fake_x_logits)
        real = torch.cat([real_y, real_x], 1).detach()
        fake = torch.cat([fake_y_logits, fake_x_logits], 1).detach()
        return {"loss": loss, "d/real": torch.sigmoid(real).mean(), "d/fake": torch.sigmoid(fake).mean()}

    def generator_loss(self, players: Players, batch: Batch | None, ctx: PhaseContext) -> Losses:
        y, x = batch["x"], batch["c"]
        g, f, loss = players["g"], players["f"], self.spec.loss
        fake_y, fake_x = g(x), f(y)
        adversarial = ADVERSARIAL_SCALE.get(loss.name, 1.0) * (g_loss(loss.name, players["d_y"](fake_y).float())
                                                               + g_loss(loss.name, players["d_x"](fake_x).float()))
        cycle = cycle_consistency_loss(x, f(fake_y), y, g(fake_x))
        total = adversarial + loss.cycle_weight * cycle
        out = {"g/adversarial": adversarial.detach(), "g/cycle": cycle.detach()}
        if loss.identity_weight > 0:
            identity = l1_loss(g(y), y) + l1_loss(f(x), x)
            total = total + loss.identity_weight * identity
            out["g/identity"] = identity.detach()
        return {"loss": total, **out}
