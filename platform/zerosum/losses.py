"""GAN losses as pure functions of D's logits (no sigmoid applied by D), or of features.

real_logits, fake_logits: float (N,); every loss returns a float32 scalar tensor that the
caller minimises. Logits are upcast to float32 first, so bf16 autocast does not cost the
log-sigmoid its precision. Identities used for stability:
    -log(sigmoid(x)) = softplus(-x),    -log(1 - sigmoid(x)) = softplus(x).
The feature losses (feature_matching_loss, mmd2_loss, mmd_gan_critic_loss) upcast to at
least float32: float64 features give a float64 loss, so tests can check them to 1e-10.

Imports torch and evals.mmd (pure torch math: the MMD losses share its kernel) only
(see docs/architecture.md, "Boundaries").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from evals.mmd import kernel_means_torch, mmd2_unbiased_torch
from zerosum.catalog import LOSS_NAMES

# Losses whose G loss needs D's logits on reals too: the G step must pass real_logits.
RELATIVISTIC_LOSSES = ("rpgan",)


def _check_name(name: str) -> None:
    if name not in LOSS_NAMES:
        raise ValueError(f"loss={name!r} is not supported; allowed: {', '.join(LOSS_NAMES)}")


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """float64 stays float64; float32, bf16 and fp16 become float32."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def d_loss(name: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss. real_logits, fake_logits: float (N,) -> scalar.

    minimax, nonsaturating: binary cross-entropy, reals labelled 1 and fakes 0 (Goodfellow 2014).
    hinge: mean(relu(1 - r)) + mean(relu(1 + f)).
    wgan-gp: mean(f) - mean(r); the caller adds gradient_penalty (Gulrajani et al. 2017).
    wgan: the same critic loss (Arjovsky et al. 2017); the caller enforces the Lipschitz
        bound with clip_weights_(D, clip) after every D update instead of a penalty.
    lsgan: 0.5 mean((r - 1)^2) + 0.5 mean(f^2) (Mao et al. 2017, a=0, b=1).
    rpgan: mean(softplus(-(r - f))), the relativistic pairing loss of R3GAN (Huang et al.
        2024): real i is paired with fake i, so real_logits and fake_logits must have the
        same shape. R3GAN adds r1_penalty and r2_penalty (zerosum.regularizers).
    """
    _check_name(name)
    r, f = real_logits.float(), fake_logits.float()
    if name in ("minimax", "nonsaturating"):
        return F.softplus(-r).mean() + F.softplus(f).mean()
    if name == "hinge":
        return F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean()
    if name in ("wgan-gp", "wgan"):
        return f.mean() - r.mean()
    if name == "rpgan":
        _check_paired(r, f)
        return F.softplus(-(r - f)).mean()
    return 0.5 * (r - 1.0).pow(2).mean() + 0.5 * f.pow(2).mean()


def _check_paired(r: torch.Tensor, f: torch.Tensor) -> None:
    if r.shape != f.shape:
        raise ValueError(
            f"rpgan pairs real i with fake i: real and fake logits need the same shape; "
            f"got {tuple(r.shape)} and {tuple(f.shape)}"
        )


def g_loss(name: str, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    """G's loss. fake_logits: float (N,), D's logits on G's samples -> scalar.

    real_logits: float (N,), D's logits on reals, required by the losses in
    RELATIVISTIC_LOSSES and ignored by the others (so a step may always pass them).

    minimax: mean(log(1 - sigmoid(f))), the paper's saturating form: its gradient vanishes
    when D confidently rejects fakes, which is early in training.
    nonsaturating: mean(-log(sigmoid(f))), fakes labelled 1 (the seed's trick): same fixed
    point, strong gradient while D rejects fakes.
    hinge, wgan-gp, wgan: -mean(f). lsgan: 0.5 mean((f - 1)^2) (c=1).
    rpgan: mean(softplus(-(f - r))), D's loss with the roles swapped: G raises each fake's
        logit relative to its paired real's. D is frozen in G's step, but the reals' logits
        still enter the loss (the gradient reaches G only through f).
    """
    _check_name(name)
    f = fake_logits.float()
    if name == "minimax":
        return -F.softplus(f).mean()
    if name == "nonsaturating":
        return F.softplus(-f).mean()
    if name in ("hinge", "wgan-gp", "wgan"):
        return -f.mean()
    if name == "rpgan":
        if real_logits is None:
            raise ValueError("loss='rpgan' is relativistic: g_loss needs real_logits, D's logits on reals")
        r = real_logits.float()
        _check_paired(r, f)
        return F.softplus(-(f - r)).mean()
    return 0.5 * (f - 1.0).pow(2).mean()


@torch.no_grad()
def clip_weights_(module: torch.nn.Module, clip: float) -> None:
    """Clamp every parameter of `module` to [-clip, clip], in place (WGAN, Arjovsky et al. 2017).

    The caller applies it after each D update (the paper's clip is 0.01). Every parameter,
    biases and norm affines included, as the reference code does: the bound on the weights is
    what makes the critic K-Lipschitz for some K. Works on a DDP wrapper too (same tensors).
    """
    if not clip > 0:
        raise ValueError(f"clip must be > 0; got {clip}")
    for p in module.parameters():
        p.clamp_(-clip, clip)


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """Feature matching (Salimans et al. 2016): || mean_i f(x_i) - mean_j f(G(z_j)) ||_2^2.

    real_features: float (N, F), fake_features: float (M, F), D's intermediate features;
    N and M may differ. Returns a scalar (at least float32). A G loss: D is frozen in G's
    step, so the real side is a constant there; nothing is detached here. The squared norm
    sums over F as the paper writes it (the authors' Theano code averages, a factor 1/F).
    """
    if real_features.dim() != 2 or fake_features.dim() != 2 or real_features.shape[1] != fake_features.shape[1]:
        raise ValueError(
            f"features must be (N, F) and (M, F); got {tuple(real_features.shape)} and {tuple(fake_features.shape)}"
        )
    diff = _at_least_float32(real_features).mean(dim=0) - _at_least_float32(fake_features).mean(dim=0)
    return diff.pow(2).sum()


def _mmd_dtype(a: torch.Tensor, b: torch.Tensor) -> torch.dtype:
    return torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)


def mmd2_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """GMMN's loss (Li et al. 2015): unbiased MMD^2 between fakes and reals, differentiable.

    fake: float (N, ...), real: float (M, ...), N, M >= 2, flattened to (N, D), (M, D).
    The kernel and estimator are evals.mmd's (one implementation, evals.mmd.mmd2_unbiased_torch):
    the mixture of Gaussians over GAUSSIAN_FACTORS with the median-heuristic bandwidth of the
    pooled batch, taken as a constant (detached), as GMMN implementations do; the U-statistic.
    So the value is eval/mmd2's statistic on this batch. It can dip below 0 when the batch
    distributions match. Kernel sums run in float64 (a small difference of large sums); the
    result is cast to float32 (float64 for float64 inputs). Host syncs: evals' finiteness
    check and the median, a few per call.
    """
    value = mmd2_unbiased_torch(fake.flatten(1), real.flatten(1))
    return value.to(_mmd_dtype(fake, real))


def mmd_gan_critic_loss(
    real_features: torch.Tensor, fake_features: torch.Tensor, *, repulsive_weight: float = 0.0
) -> torch.Tensor:
    """The MMD-GAN critic's loss: the repulsive loss of Wang et al. 2019 (ICLR), minimised by D.

    real_features: float (N, F) = D(x), fake_features: float (M, F) = D(G(z)), N, M >= 2.
    With the U-statistic means of evals.mmd's kernel (kernel_means_torch: real-real k_rr,
    fake-fake k_ff, real-fake k_rf) and lambda = repulsive_weight, the family of the authors'
    code (richardwth/MMD-GAN, repulsive weights (lambda, lambda - 1))

        L_D = lambda k_rf - (lambda - 1) k_rr - k_ff

    is, at lambda = 0 (the default, the paper's choice), the repulsive loss k_rr - k_ff: D
    pushes real features apart from each other and pulls fakes together, which makes it learn
    the fine differences between reals; at lambda = 2 it is the attractive -MMD^2_u (Li et
    al. 2017). G's loss is MMD^2_u of the same features: mmd2_loss(fake_features, real_features).

    Why this and not Binkowski et al. 2018's -MMD^2 plus a gradient penalty: the penalty is on
    the witness function at interpolates, so it needs D on a third batch and a double backward
    through D's whole feature map; the repulsive loss is a pure function of the two feature
    batches, like every loss here, and Wang et al. pair it with spectral normalisation, which
    models/ already has (spectral_norm: true), reporting lower FID than the attractive loss.
    The kernel is evals.mmd's median-heuristic Gaussian mixture rather than the paper's fixed
    sigma = 1 Gaussian: one kernel across the platform, and invariant to the features' scale,
    which D could otherwise inflate. Returns a scalar, float32 (float64 for float64 inputs).
    """
    k_rr, k_ff, k_rf = kernel_means_torch(real_features.flatten(1), fake_features.flatten(1))
    lam = float(repulsive_weight)
    loss = lam * k_rf - (lam - 1.0) * k_rr - k_ff
    return loss.to(_mmd_dtype(real_features, fake_features))


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


def l1_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean |outputs - targets| over every element (pix2pix's L1 term), at least float32."""
    return (_at_least_float32(outputs) - _at_least_float32(targets)).abs().mean()


def cycle_consistency_loss(x: torch.Tensor, x_cycled: torch.Tensor, y: torch.Tensor,
                           y_cycled: torch.Tensor) -> torch.Tensor:
    """CycleGAN's cycle loss (Zhu et al. 2017, eq. 2): mean|F(G(x)) - x| + mean|G(F(y)) - y|.
    x, x_cycled: (N, C, H, W) of domain X; y, y_cycled: (M, C, H, W) of domain Y."""
    return l1_loss(x_cycled, x) + l1_loss(y_cycled, y)
