"""GAN losses as pure functions of D's logits (no sigmoid applied by D).

real_logits, fake_logits: float (N,); every loss returns a float32 scalar tensor that the
caller minimises. Logits are upcast to float32 first, so bf16 autocast does not cost the
log-sigmoid its precision. Identities used for stability:
    -log(sigmoid(x)) = softplus(-x),    -log(1 - sigmoid(x)) = softplus(x).

Imports torch only (see ARCHITECTURE.md, "Boundaries").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from zerosum.catalog import LOSS_NAMES


def _check_name(name: str) -> None:
    if name not in LOSS_NAMES:
        raise ValueError(f"loss={name!r} is not supported; allowed: {', '.join(LOSS_NAMES)}")


def d_loss(name: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss. real_logits, fake_logits: float (N,) -> scalar.

    minimax, nonsaturating: binary cross-entropy, reals labelled 1 and fakes 0 (Goodfellow 2014).
    hinge: mean(relu(1 - r)) + mean(relu(1 + f)).
    wgan-gp: mean(f) - mean(r); the caller adds gradient_penalty (Gulrajani et al. 2017).
    lsgan: 0.5 mean((r - 1)^2) + 0.5 mean(f^2) (Mao et al. 2017, a=0, b=1).
    """
    _check_name(name)
    r, f = real_logits.float(), fake_logits.float()
    if name in ("minimax", "nonsaturating"):
        return F.softplus(-r).mean() + F.softplus(f).mean()
    if name == "hinge":
        return F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean()
    if name == "wgan-gp":
        return f.mean() - r.mean()
    return 0.5 * (r - 1.0).pow(2).mean() + 0.5 * f.pow(2).mean()


def g_loss(name: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """G's loss. fake_logits: float (N,), D's logits on G's samples -> scalar.

    minimax: mean(log(1 - sigmoid(f))), the paper's saturating form: its gradient vanishes
    when D confidently rejects fakes, which is early in training.
    nonsaturating: mean(-log(sigmoid(f))), fakes labelled 1 (the seed's trick): same fixed
    point, strong gradient while D rejects fakes.
    hinge, wgan-gp: -mean(f). lsgan: 0.5 mean((f - 1)^2) (c=1).
    """
    _check_name(name)
    f = fake_logits.float()
    if name == "minimax":
        return -F.softplus(f).mean()
    if name == "nonsaturating":
        return F.softplus(-f).mean()
    if name in ("hinge", "wgan-gp"):
        return -f.mean()
    return 0.5 * (f - 1.0).pow(2).mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): weight * mean((||grad critic(x_hat)||_2 - 1)^2).

    real, fake: float (N, ...) same shape; x_hat = eps * real + (1 - eps) * fake with one
    eps ~ U[0, 1] per sample. critic: (N, ...) -> (N,); for a conditional D pass
    `lambda x: D(x, y)`. The graph is kept (create_graph=True) so the penalty trains D.
    generator: optional RNG for eps (it may live on another device than the data).
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape; got {tuple(real.shape)}, {tuple(fake.shape)}"
        )
    n = real.shape[0]
    rng_device = generator.device if generator is not None else real.device
    eps = torch.rand(n, generator=generator, device=rng_device, dtype=real.dtype)
    eps = eps.to(real.device).view(n, *([1] * (real.dim() - 1)))
    # Detached: the penalty constrains D only, and must not backpropagate into G.
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    # The tiny constant keeps sqrt differentiable where the gradient is exactly zero.
    norm = torch.sqrt(grad.float().flatten(1).pow(2).sum(dim=1) + 1e-12)
    return weight * (norm - 1.0).pow(2).mean()
