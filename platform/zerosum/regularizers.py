"""Gradient penalties on D, pure functions of a critic and a batch (torch only).

R1 (Mescheder et al. 2018) penalises D's gradient on reals, R2 the same on fakes; R3GAN
(Huang et al. 2024) uses both with the rpgan loss. Spectral normalisation lives with the
models: zerosum.models.layers.apply_spectral_norm (the `spectral_norm` flag of D).

Imports torch only (see docs/architecture.md, "Boundaries").
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Critic = Callable[[torch.Tensor], torch.Tensor]


def _check_args(gamma: float, interval: int) -> None:
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0; got {gamma}")
    if int(interval) != interval or interval < 1:
        raise ValueError(f"interval must be an integer >= 1; got {interval}")


def _grad_penalty(critic: Critic, samples: torch.Tensor, gamma: float, interval: int) -> torch.Tensor:
    """interval * gamma / 2 * mean_i ||grad_x D(x_i)||^2 -> scalar (at least float32)."""
    _check_args(gamma, interval)
    # Detached: the penalty trains D only, and must not backpropagate into G (R2's fakes).
    x = samples.detach().requires_grad_(True)
    out = critic(x)
    # When D treats samples independently, the gradient of the summed logits is each sample's
    # own gradient; create_graph keeps it differentiable w.r.t. D's parameters.
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    grad = grad.to(torch.promote_types(grad.dtype, torch.float32))
    sq_norm = grad.flatten(1).pow(2).sum(dim=1)
    return (interval * gamma / 2) * sq_norm.mean()


def r1_penalty(critic: Critic, reals: torch.Tensor, gamma: float, *, interval: int = 1) -> torch.Tensor:
    """R1 = gamma / 2 * E_x ||grad_x D(x)||^2 on reals (Mescheder et al. 2018), to add to D's loss.

    critic: (N, ...) -> logits (N,); for a conditional D pass `lambda x: D(x, y)`.
    reals: float (N, ...). Returns a scalar, float32 (float64 for float64 inputs), whose graph
    reaches D's parameters (create_graph=True) and not `reals`.

    Lazy regularisation (StyleGAN2, Karras et al. 2020): compute the penalty only every
    `interval` D steps and pass that interval here; the penalty is multiplied by it, so its
    average strength per step is unchanged. StyleGAN2 also scales that optimiser's lr and
    betas by interval / (interval + 1); that is the caller's to do.

    Layers that couple samples (BatchNorm in train mode, MinibatchStd) make the gradient of the
    summed logits differ from the per-sample gradients, as in every R1 implementation that
    uses them (StyleGAN2's, with minibatch std, included).
    """
    return _grad_penalty(critic, reals, gamma, interval)


def r2_penalty(critic: Critic, fakes: torch.Tensor, gamma: float, *, interval: int = 1) -> torch.Tensor:
    """R2 = gamma / 2 * E ||grad_x D(x)||^2 on fakes; as r1_penalty otherwise.

    fakes are detached here: the penalty trains D, never G.
    """
    return _grad_penalty(critic, fakes, gamma, interval)
