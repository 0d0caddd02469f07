"""One D update and one G update, as pure functions over modules and batches.

No Ray and no MLflow here: the loop owns side effects. Each step returns a dict
of floats with the metric keys that tracking logs (`loss/d`, `d/real`, ...).

DDP and BatchNorm notes (see ARCHITECTURE.md):
- D sees reals and fakes in two forwards, as in the DCGAN reference code: with
  BatchNorm, one mixed batch would normalise fakes with real statistics in the D
  step but with fake-only statistics in the G step, and D then wins trivially.
  Two forwards before one backward are safe under DDP because the wrappers are
  built with broadcast_buffers=False (no in-place buffer broadcast per forward).
- The G step runs fakes through D's *unwrapped* module with D frozen: a frozen
  DDP(D) forward would prepare a gradient reduction that never completes.
- Fakes for the D step come from G's unwrapped module under no_grad (detached).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass

import torch
from torch import nn

from zerosum.losses import d_loss, g_loss, gradient_penalty

AutocastFactory = Callable[[], ContextManager]


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper, or the model itself."""
    return getattr(module, "module", module)


def no_autocast() -> ContextManager:
    return contextlib.nullcontext()


@dataclass
class StepConfig:
    """What a step needs to know besides modules and data."""

    loss: str
    gp_weight: float = 10.0
    autocast: AutocastFactory = no_autocast


def d_step(
    generator: nn.Module,
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    reals: torch.Tensor,
    real_labels: torch.Tensor | None,
    z: torch.Tensor,
    fake_labels: torch.Tensor | None,
    cfg: StepConfig,
) -> dict[str, float]:
    """One D update on reals (target 1) and detached fakes (target 0).

    reals: float (B, *sample_shape); z: float (B', z_dim); labels: int64 or None.
    Returns loss/d, d/real and d/fake (mean D probabilities in [0, 1]).
    """
    with torch.no_grad(), cfg.autocast():
        fakes = unwrap(generator)(z, fake_labels)
    with cfg.autocast():
        real_logits = discriminator(reals, real_labels).float()
        fake_logits = discriminator(fakes.to(reals.dtype), fake_labels).float()
        loss = d_loss(cfg.loss, real_logits, fake_logits)
    if cfg.loss == "wgan-gp":
        critic = _critic_for(unwrap(discriminator), real_labels, len(reals), len(fakes))
        loss = loss + gradient_penalty(critic, *_paired(reals, fakes), weight=cfg.gp_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {
        "loss/d": loss.item(),
        "d/real": torch.sigmoid(real_logits.detach()).mean().item(),
        "d/fake": torch.sigmoid(fake_logits.detach()).mean().item(),
    }


def _paired(reals: torch.Tensor, fakes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-length real and fake batches for interpolation (the shorter length wins)."""
    n = min(len(reals), len(fakes))
    return reals[:n], fakes[:n].detach().to(reals.dtype)


def _critic_for(module: nn.Module, labels: torch.Tensor | None, n_real: int, n_fake: int):
    n = min(n_real, n_fake)
    return lambda x: module(x, None if labels is None else labels[:n]).float()


def g_step(
    generator: nn.Module,
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    z: torch.Tensor,
    labels: torch.Tensor | None,
    cfg: StepConfig,
) -> dict[str, float]:
    """One G update through a frozen D, fakes labelled real. z: float (B, z_dim)."""
    critic = unwrap(discriminator)
    critic.requires_grad_(False)
    try:
        with cfg.autocast():
            fake_logits = critic(generator(z, labels), labels).float()
            loss = g_loss(cfg.loss, fake_logits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    finally:
        critic.requires_grad_(True)
    return {"loss/g": loss.item(), "g/d_fake": torch.sigmoid(fake_logits.detach()).mean().item()}


def make_ema(generator: nn.Module) -> nn.Module:
    """A frozen copy of G's weights, to be updated with `update_ema`."""
    ema = copy.deepcopy(unwrap(generator))
    return ema.eval().requires_grad_(False)


@torch.no_grad()
def update_ema(ema: nn.Module, generator: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * G for parameters; buffers (BN stats) are copied."""
    source = unwrap(generator)
    for ema_param, param in zip(ema.parameters(), source.parameters()):
        ema_param.lerp_(param.detach(), 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), source.buffers()):
        ema_buffer.copy_(buffer)


def run_round(
    d_steps: int,
    g_steps: int,
    d_update: Callable[[], dict[str, float]],
    g_update: Callable[[], dict[str, float]],
) -> dict[str, float]:
    """Exactly d_steps D updates, then g_steps G updates; returns the mean of each metric.

    The ratio is config, never data-dependent: every DDP rank must run the same
    number of passes or the gradient all-reduce hangs.
    """
    records = [d_update() for _ in range(d_steps)] + [g_update() for _ in range(g_steps)]
    return mean_metrics(records)


def mean_metrics(records: list[dict[str, float]]) -> dict[str, float]:
    """Average each key over the records that have it."""
    sums: dict[str, list[float]] = {}
    for record in records:
        for key, value in record.items():
            sums.setdefault(key, []).append(value)
    return {key: sum(values) / len(values) for key, values in sums.items()}
