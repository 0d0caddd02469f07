"""One update of one side of the game, for any method, as a pure function of modules and a batch.

No Ray and no MLflow here: the loop owns side effects. A phase (`run_phase`) trains the
players its method names with one optimiser; every other player is passed unwrapped and
frozen. Metrics stay device tensors: nothing here calls `.item()`, so a GPU step never
waits for the host; the loop reads them once per logging interval (`MetricWindow`).

DDP and BatchNorm notes (docs/architecture.md):
- D sees reals and fakes in two forwards, as in the DCGAN reference code: with
  BatchNorm, one mixed batch would normalise fakes with real statistics in the D
  step but with fake-only statistics in the G step, and D then wins trivially.
  Two forwards before one backward are safe under DDP because the wrappers are
  built with forward_sync_buffers=False (no buffer broadcast per forward).
- A frozen player is used through its *unwrapped* module: a frozen DDP forward would
  prepare a gradient reduction that never completes.
- In the critic phase G is frozen, so fakes carry no graph (they are detached).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager as ContextManager

import torch
from torch import nn

Metrics = dict[str, torch.Tensor]


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside torch.compile's and DDP's wrappers (compile wraps DDP), or the
    model itself: what checkpoints hold, so they load into an uncompiled model."""
    module = getattr(module, "_orig_mod", module)
    return getattr(module, "module", module)


def no_autocast() -> ContextManager:
    return contextlib.nullcontext()


@contextlib.contextmanager
def frozen(modules: Iterable[nn.Module]):
    """requires_grad_(False) on these modules for the block, restored after (also on error)."""
    modules = list(modules)
    for module in modules:
        module.requires_grad_(False)
    try:
        yield
    finally:
        for module in modules:
            module.requires_grad_(True)


def run_phase(loss_fn, players: dict[str, nn.Module], trained: tuple[str, ...], optimizer: torch.optim.Optimizer,
              batch, ctx, loss_key: str, after_step: Callable[[dict[str, nn.Module]], None] | None = None) -> Metrics:
    """One optimiser step of the players in `trained` on `loss_fn(view, batch, ctx)`.

    view: the trained players as they are (DDP-wrapped in Ray Train), every other player
    unwrapped and frozen. loss_fn returns {"loss": scalar, metrics...}. Returns the loss
    under `loss_key` and the metrics, all detached device tensors.
    """
    view = {name: module if name in trained else unwrap(module) for name, module in players.items()}
    with frozen(view[name] for name in view if name not in trained):
        with ctx.autocast():
            out = loss_fn(view, batch, ctx)
        loss = out.pop("loss")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if after_step is not None:
        after_step(view)
    return {loss_key: loss.detach(), **{key: value.detach() for key, value in out.items()}}


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """model.eval() for the block, then every submodule back in the mode it was in (a sampler
    may join a live G in train mode with an EMA copy that always stays in eval mode)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


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
    d_update: Callable[[], Metrics],
    g_update: Callable[[], Metrics],
) -> Metrics:
    """Exactly d_steps critic updates, then g_steps generator updates; the mean of each metric.

    The ratio is config, never data-dependent: every DDP rank must run the same
    number of passes or the gradient all-reduce hangs.
    """
    records = [d_update() for _ in range(d_steps)] + [g_update() for _ in range(g_steps)]
    return mean_metrics(records)


def mean_metrics(records: list[dict]) -> dict:
    """Average each key over the records that have it (floats or tensors alike)."""
    sums: dict[str, list] = {}
    for record in records:
        for key, value in record.items():
            sums.setdefault(key, []).append(value)
    return {key: sum(values) / len(values) for key, values in sums.items()}


class MetricWindow:
    """Round metrics summed on their device over a logging interval; read once, as floats.

    Reading is the only host synchronisation of training metrics: one transfer of every
    key per interval instead of several `.item()` calls per round. A NaN in any round makes the window's mean
    NaN, so the divergence guard still sees it within one interval.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.rounds = 0

    def add(self, metrics: Metrics) -> None:
        for key, value in metrics.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.rounds += 1

    def read(self) -> dict[str, float]:
        """Mean of each metric over the rounds added since the last read, and reset."""
        if not self.rounds:
            return {}
        keys = sorted(self.sums)
        values = (torch.stack([self.sums[k].to(self.sums[keys[0]].device) for k in keys]) / self.rounds).tolist()
        self.sums, self.rounds = {}, 0
        return dict(zip(keys, values))
