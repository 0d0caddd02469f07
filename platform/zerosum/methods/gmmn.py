"""GMMN (Li, Swersky and Zemel, ICML 2015): G alone, trained to minimise MMD^2 to the reals.

There is no critic: the kernel (evals' mixture of Gaussians with the median heuristic,
the same statistic as eval/mmd2) is the judge. G's loss is MMD^2 between a batch of its
samples and a batch of reals, on the flattened samples.
"""

from __future__ import annotations

from zerosum.losses import mmd2_loss
from zerosum.methods.base import Batch, Losses, Method, PhaseContext, Players, fakes_and_labels
from zerosum.train.build import build_generator_for


class GmmnMethod(Method):
    name = "gmmn"

    def build(self, sample_shape, num_classes) -> Players:
        return {"g": build_generator_for(self.spec, sample_shape, num_classes)}

    def generator_needs_reals(self) -> bool:
        return True

    def generator_loss(self, players: Players, batch: Batch, ctx: PhaseContext) -> Losses:
        fakes, _ = fakes_and_labels(players, ctx, self.spec.schedule.fake_batch_size)
        loss = mmd2_loss(fakes.float(), batch["x"].float())
        return {"loss": loss, "g/mmd2": loss.detach()}
