"""The EMA generator's decay schedule, a pure function of the update count (no torch needed).

The loop keeps G_ema <- d_t G_ema + (1 - d_t) G after each G update. With a constant
d_t = 0.999 the initial weights keep a share 0.999^t of G_ema: 61% at t = 500, so early
evals and samples of G_ema show mostly the untrained network. The warm-up here is the
TensorFlow ExponentialMovingAverage rule with num_updates (used by many GAN codebases):

    d_t = min(decay, (1 + t) / (10 + t)),    t = updates already applied (0, 1, 2, ...)

It needs no new hyperparameter and depends only on t, which the loop and its checkpoints
already count, so a resumed run continues the same schedule. The share of the initial
weights after T updates is prod_t d_t, which telescopes while the ramp is active:
9! * T! / (T + 9)!, about 2e-19 at T = 500 (and below 1e-3 from T = 7). StyleGAN's
alternative, a half-life in images ramped over the first images (ema_kimg, ema_rampup),
ties the decay to the batch size and needs two more settings; it is not implemented.
"""

from __future__ import annotations


def ema_decay_at(step: int, decay: float, *, warmup: bool = True) -> float:
    """The decay for update number `step` (0-based): min(decay, (1 + step) / (10 + step)).

    decay in [0, 1]; warmup=False gives the constant `decay` (the plain rule). The ramp
    starts at 0.1, increases strictly with step, and reaches `decay` once
    step >= (10 decay - 1) / (1 - decay) (8991 updates for 0.999).
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"ema decay must be in [0, 1]; got {decay}")
    if int(step) != step or step < 0:
        raise ValueError(f"step must be an integer >= 0; got {step}")
    if not warmup:
        return float(decay)
    return min(float(decay), (1.0 + step) / (10.0 + step))
