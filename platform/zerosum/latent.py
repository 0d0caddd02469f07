"""InfoGAN latent codes (Chen et al. 2016): sampling and the mutual-information loss (torch only).

G gets [z, codes]: a categorical code (one-hot, K values) and C continuous codes, uniform in
[-1, 1]. An auxiliary head Q on D's features predicts them from G(z, c); the InfoGAN bound
I(c; G(z, c)) >= H(c) - E[-log Q(c | x)] is maximised by minimising the cross-entropy term
E[-log Q(c | x)] (H(c) is a constant of the prior). As in the authors' code
(openai/InfoGAN, infogan/misc/distributions.py) the continuous codes are modelled by a
factored Gaussian Q (mean, std) although their prior is uniform, and each term is summed
over its code's dimensions and averaged over the batch. Both G and Q (with D's trunk)
minimise the loss, weighted by lambda (the paper: 1 for discrete codes, smaller for
continuous ones).

Imports torch only (see docs/architecture.md, "Boundaries").
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

# log(2 pi) / 2, the Gaussian NLL's constant: kept, so the term is the true NLL in nats.
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class SampledCodes(NamedTuple):
    """onehot: float (n, K); continuous: float (n, C) in [-1, 1). Unpacks as (onehot, continuous)."""

    onehot: torch.Tensor
    continuous: torch.Tensor

    @property
    def index(self) -> torch.Tensor:
        """The categories as int64 (n,), the targets of mutual_information_loss."""
        return self.onehot.argmax(dim=1)


class InfoLoss(NamedTuple):
    """Each term a scalar: cross-entropy of the category, Gaussian NLL of the continuous codes."""

    categorical: torch.Tensor
    continuous: torch.Tensor
    total: torch.Tensor


class LatentCodes:
    """K categories and C continuous codes; dim = K + C inputs appended to G's noise."""

    def __init__(self, categorical: int, continuous: int) -> None:
        for name, value in (("categorical", categorical), ("continuous", continuous)):
            if int(value) != value or value < 0:
                raise ValueError(f"{name} must be an integer >= 0; got {value}")
        if categorical == 1:
            raise ValueError("categorical must be 0 (none) or >= 2: one category carries no information")
        self.categorical, self.continuous = int(categorical), int(continuous)

    @property
    def dim(self) -> int:
        return self.categorical + self.continuous

    def sample(
        self, n: int, generator: torch.Generator, device: torch.device | str | None = None
    ) -> SampledCodes:
        """n codes from the prior: categories uniform over K, continuous codes U[-1, 1).

        Drawn on the generator's device (category first, then the continuous block) and moved to
        `device` (default: the generator's). float32 outputs.
        """
        target = torch.device(device) if device is not None else generator.device
        if self.categorical:
            index = torch.randint(self.categorical, (n,), generator=generator, device=generator.device)
            onehot = F.one_hot(index, self.categorical).float()
        else:
            onehot = torch.zeros(n, 0, device=generator.device)
        u = torch.rand(n, self.continuous, generator=generator, device=generator.device)
        return SampledCodes(onehot.to(target), (2.0 * u - 1.0).to(target))


def mutual_information_loss(
    q_logits: torch.Tensor | None,
    q_mean: torch.Tensor | None,
    q_log_std: torch.Tensor | None,
    codes_index: torch.Tensor | None,
    continuous: torch.Tensor | None,
    *,
    fixed_std: float = 1.0,
) -> InfoLoss:
    """InfoGAN's loss E[-log Q(c | G(z, c))], per code type and summed.

    q_logits: float (n, K), Q's category logits; codes_index: int64 (n,), the sampled categories.
        categorical = mean_i -log softmax(q_logits_i)[codes_index_i].
    q_mean: float (n, C); q_log_std: float (n, C), or None for a fixed std `fixed_std` (the
        authors' MNIST setting, fix_std with std 1); continuous: float (n, C), the sampled codes.
        continuous = mean_i sum_j [log(2 pi)/2 + log s_ij + (c_ij - mu_ij)^2 / (2 s_ij^2)].
    Pass None for a code type the model does not have; its term is 0. Terms are at least float32.
    """
    has_cat = q_logits is not None and q_logits.shape[1] > 0
    has_cont = q_mean is not None and q_mean.shape[1] > 0
    if not (has_cat or has_cont):
        raise ValueError("mutual_information_loss needs q_logits or q_mean")
    like = q_logits if has_cat else q_mean
    dtype = torch.promote_types(like.dtype, torch.float32)
    zero = torch.zeros((), dtype=dtype, device=like.device)
    categorical = continuous_term = zero
    if has_cat:
        if codes_index is None:
            raise ValueError("q_logits needs codes_index, the sampled categories")
        categorical = F.cross_entropy(q_logits.to(dtype), codes_index)
    if has_cont:
        if continuous is None or continuous.shape != q_mean.shape:
            got = None if continuous is None else tuple(continuous.shape)
            raise ValueError(f"q_mean {tuple(q_mean.shape)} needs sampled continuous codes of that shape; got {got}")
        mean = q_mean.to(torch.promote_types(q_mean.dtype, torch.float32))
        if q_log_std is None:
            if not fixed_std > 0:
                raise ValueError(f"fixed_std must be > 0; got {fixed_std}")
            log_std = torch.full_like(mean, math.log(fixed_std))
        else:
            log_std = q_log_std.to(mean.dtype)
        # In log std rather than std: no TINY offset is needed (the authors add 1e-8 to std).
        z = (continuous.to(mean.dtype) - mean) * torch.exp(-log_std)
        continuous_term = (HALF_LOG_2PI + log_std + 0.5 * z.square()).sum(dim=1).mean()
    return InfoLoss(categorical, continuous_term, categorical + continuous_term)
