"""Stopping rules: small stateful objects fed one evaluation's metrics at a time.

Every rule has ``update(metrics) -> Decision``. ``metrics`` maps zerosum's metric
keys (``eval/fid``, ``eval/kid``, ``eval/mmd2``, ``eval/mmd_pvalue``,
``eval/modes``, ``eval/hq_fraction``, ``eval/classes_covered``, ``loss/d``,
``loss/g``, ``d/real``, ``d/fake``) to floats. A rule whose metric is missing
from an update leaves its state unchanged and does not stop, so rules can be
fed every report even when some metrics are computed less often.

Rules keep their state as plain Python values: ``state_dict()`` returns a dict
of ints, floats, strings, bools and lists of those, and ``load_state_dict``
restores it, so a training checkpoint can carry them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "AllOf",
    "AnyOf",
    "Decision",
    "DivergenceGuard",
    "Patience",
    "StoppingRule",
    "TwoSampleTestStop",
    "is_better",
]


@dataclass(frozen=True)
class Decision:
    """Whether to stop now, and why (empty reason when not stopping)."""

    stop: bool
    reason: str = ""


CONTINUE = Decision(False, "")


class StoppingRule:
    """Base class: subclasses implement ``update`` and list their state in ``_state_keys``."""

    _state_keys: tuple[str, ...] = ()

    def update(self, metrics: Mapping[str, float]) -> Decision:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {key: getattr(self, key) for key in self._state_keys}

    def load_state_dict(self, state: Mapping) -> None:
        missing = [key for key in self._state_keys if key not in state]
        if missing:
            raise ValueError(f"state is missing keys {missing} for {type(self).__name__}")
        for key in self._state_keys:
            setattr(self, key, state[key])


def is_better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Is `value` better than `best` by more than `min_delta` under `mode` ("min"/"max")?

    A NaN value is never better; anything that is not NaN beats a missing or NaN best.
    The one comparison that stopping rules, campaign tables and progress lines share.
    """
    if math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _check_mode(mode: str) -> str:
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}")
    return mode


class Patience(StoppingRule):
    """Stop when ``metric`` has not improved by more than ``min_delta`` for ``patience`` updates.

    Args:
        metric: key in the metrics dict, e.g. "eval/fid".
        patience: updates without improvement before stopping, >= 1.
        min_delta: an improvement must beat the best value by more than this, >= 0.
        mode: "min" (lower is better, FID) or "max" (higher is better).

    A NaN value counts as no improvement.
    """

    _state_keys = ("best", "bad_updates")

    def __init__(self, metric: str, patience: int, min_delta: float = 0.0, mode: str = "min"):
        if int(patience) < 1 or min_delta < 0:
            raise ValueError(f"patience must be >= 1 and min_delta >= 0; got {patience}, {min_delta}")
        self.metric, self.patience, self.min_delta = metric, int(patience), float(min_delta)
        self.mode = _check_mode(mode)
        self.best: float | None = None
        self.bad_updates = 0

    def _improves(self, value: float) -> bool:
        return is_better(value, self.best, self.mode, self.min_delta)

    def update(self, metrics: Mapping[str, float]) -> Decision:
        if self.metric not in metrics:
            return CONTINUE
        value = float(metrics[self.metric])
        if self._improves(value):
            self.best, self.bad_updates = value, 0
            return CONTINUE
        self.bad_updates += 1
        if self.bad_updates >= self.patience:
            return Decision(
                True,
                f"{self.metric} has not improved on its best {self.best!r} by more than "
                f"{self.min_delta} for {self.bad_updates} evaluations (patience {self.patience})",
            )
        return CONTINUE


class TwoSampleTestStop(StoppingRule):
    """Stop once the two-sample test can no longer tell fakes from reals.

    Stops when ``metrics[metric]`` (a p-value) is above ``alpha`` for
    ``consecutive`` updates in a row.
    """

    _state_keys = ("streak",)

    def __init__(self, alpha: float = 0.05, metric: str = "eval/mmd_pvalue", consecutive: int = 1):
        if not 0 < alpha < 1 or int(consecutive) < 1:
            raise ValueError(f"alpha must be in (0, 1) and consecutive >= 1; got {alpha}, {consecutive}")
        self.alpha, self.metric, self.consecutive = float(alpha), metric, int(consecutive)
        self.streak = 0

    def update(self, metrics: Mapping[str, float]) -> Decision:
        if self.metric not in metrics:
            return CONTINUE
        pvalue = float(metrics[self.metric])
        self.streak = self.streak + 1 if pvalue > self.alpha else 0
        if self.streak >= self.consecutive:
            return Decision(
                True,
                f"{self.metric}={pvalue:.4g} > alpha={self.alpha:g} for {self.streak} evaluation(s): "
                "the test no longer tells generated from real samples",
            )
        return CONTINUE


class DivergenceGuard(StoppingRule):
    """Stop on diverged training.

    - Any metric whose key starts with ``loss_prefix`` ("loss/") is NaN or Inf: stop at once.
    - D saturates: ``d/real`` >= ``real_threshold`` and ``d/fake`` <= ``fake_threshold``
      (mean D probabilities) for ``k`` updates in a row that report both.
    """

    _state_keys = ("streak",)

    def __init__(self, k: int = 3, real_threshold: float = 0.99, fake_threshold: float = 0.01,
                 loss_prefix: str = "loss/"):
        if int(k) < 1 or not 0 <= fake_threshold < real_threshold <= 1:
            raise ValueError(
                "k must be >= 1 and 0 <= fake_threshold < real_threshold <= 1; got "
                f"k={k}, fake_threshold={fake_threshold}, real_threshold={real_threshold}"
            )
        self.k, self.real_threshold, self.fake_threshold = int(k), float(real_threshold), float(fake_threshold)
        self.loss_prefix = loss_prefix
        self.streak = 0

    def update(self, metrics: Mapping[str, float]) -> Decision:
        bad = sorted(key for key, value in metrics.items()
                     if key.startswith(self.loss_prefix) and not math.isfinite(float(value)))
        if bad:
            return Decision(True, f"non-finite loss: {', '.join(f'{k}={float(metrics[k])}' for k in bad)}")
        if "d/real" not in metrics or "d/fake" not in metrics:
            return CONTINUE
        real, fake = float(metrics["d/real"]), float(metrics["d/fake"])
        saturated = real >= self.real_threshold and fake <= self.fake_threshold
        self.streak = self.streak + 1 if saturated else 0
        if self.streak >= self.k:
            return Decision(
                True,
                f"discriminator saturated for {self.streak} evaluations: d/real={real:.4g} >= "
                f"{self.real_threshold:g} and d/fake={fake:.4g} <= {self.fake_threshold:g}",
            )
        return CONTINUE


class _Combined(StoppingRule):
    """Feeds every update to all child rules (no short-circuit, so their state stays in step)."""

    def __init__(self, *rules: StoppingRule):
        if not rules or not all(isinstance(rule, StoppingRule) for rule in rules):
            raise ValueError(f"rules must be one or more StoppingRule objects; got {rules!r}")
        self.rules = list(rules)

    def _decide(self, decisions: list[Decision]) -> bool:
        raise NotImplementedError

    def update(self, metrics: Mapping[str, float]) -> Decision:
        decisions = [rule.update(metrics) for rule in self.rules]
        if not self._decide(decisions):
            return CONTINUE
        return Decision(True, "; ".join(d.reason for d in decisions if d.stop))

    def state_dict(self) -> dict:
        return {"rules": [rule.state_dict() for rule in self.rules]}

    def load_state_dict(self, state: Mapping) -> None:
        states = state.get("rules") if isinstance(state, Mapping) else None
        if not isinstance(states, list) or len(states) != len(self.rules):
            raise ValueError(f"state['rules'] must be a list of {len(self.rules)} rule states; got {states!r}")
        for rule, rule_state in zip(self.rules, states):
            rule.load_state_dict(rule_state)


class AnyOf(_Combined):
    """Stop when at least one rule says stop."""

    def _decide(self, decisions: list[Decision]) -> bool:
        return any(d.stop for d in decisions)


class AllOf(_Combined):
    """Stop when every rule says stop at the same update."""

    def _decide(self, decisions: list[Decision]) -> bool:
        return all(d.stop for d in decisions)
