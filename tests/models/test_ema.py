"""train.ema: the EMA warm-up min(decay, (1 + t) / (10 + t)) and what it does to the initial weights."""

from __future__ import annotations

import math

import pytest

from zerosum.train.ema import ema_decay_at


def test_the_ramp_starts_at_a_tenth_and_rises_to_the_decay():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1, rel=1e-15)  # 1 / 10, one rounding
    decays = [ema_decay_at(t, 0.999) for t in range(20_000)]
    assert all(b >= a for a, b in zip(decays, decays[1:]))
    # (1 + t) / (10 + t) >= 0.999 from t = (10 * 0.999 - 1) / 0.001 = 8990 on.
    first = decays.index(0.999)
    assert first in (8990, 8991)  # the boundary value 8990 is 8991 / 9000 = 0.999 up to rounding
    assert all(d == 0.999 for d in decays[first:])
    assert all(d < 0.999 for d in decays[:8990])


def test_initial_weights_share_after_500_updates():
    plain = math.prod(ema_decay_at(t, 0.999, warmup=False) for t in range(500))
    ramped = math.prod(ema_decay_at(t, 0.999) for t in range(500))
    # 0.999^500 = exp(500 log 0.999) = 0.6064: the "61% of G's initial weights".
    assert plain == pytest.approx(0.999**500, rel=1e-12) and plain == pytest.approx(0.6064, abs=1e-4)
    # The ramp telescopes: prod_{t<500} (1 + t) / (10 + t) = 9! 500! / 509!.
    closed = math.factorial(9) * math.factorial(500) / math.factorial(509)
    # 500 float multiplications of roundings 1.1e-16 each: 1e-13 relative at most.
    assert ramped == pytest.approx(closed, rel=1e-12)
    assert ramped < 1e-3 < plain


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.9999])
def test_decay_is_never_exceeded(decay):
    assert all(ema_decay_at(t, decay) <= decay for t in range(0, 100_000, 997))
    assert ema_decay_at(10**9, decay) == decay


@pytest.mark.parametrize("args, message", [((0, 1.5), "decay"), ((-1, 0.9), "step"), ((1.5, 0.9), "step")])
def test_bad_arguments_raise(args, message):
    with pytest.raises(ValueError, match=message):
        ema_decay_at(*args)
