"""Stopping rules on constructed metric sequences, and their checkpointable state."""

from __future__ import annotations

import copy
import json
import math

import pytest

from evals.stopping import AllOf, AnyOf, Decision, DivergenceGuard, Patience, TwoSampleTestStop


def feed(rule, sequence):
    """Decisions for each metrics dict in turn."""
    return [rule.update(metrics) for metrics in sequence]


def test_patience_min_fires_after_patience_bad_updates():
    rule = Patience("eval/fid", patience=2, min_delta=0.5)
    fids = [50.0, 40.0, 39.8, 39.9, 30.0, 29.9, 29.8]
    stops = [d.stop for d in feed(rule, [{"eval/fid": v} for v in fids])]
    # 39.8 and 39.9 do not beat 40 by > 0.5; 30 resets; 29.9 and 29.8 do not beat 30.
    assert stops == [False, False, False, True, False, False, True]


def test_patience_max_and_missing_metric():
    rule = Patience("eval/modes", patience=1, mode="max")
    decisions = feed(rule, [{"eval/modes": 3}, {"loss/d": 1.0}, {"eval/modes": 5}, {"eval/modes": 5}])
    assert [d.stop for d in decisions] == [False, False, False, True]
    assert "eval/modes" in decisions[-1].reason


def test_patience_counts_nan_as_no_improvement():
    rule = Patience("eval/fid", patience=2)
    assert [d.stop for d in feed(rule, [{"eval/fid": 10.0}, {"eval/fid": math.nan}, {"eval/fid": math.nan}])] == [
        False, False, True]


def test_two_sample_test_stop():
    rule = TwoSampleTestStop(alpha=0.05)
    pvalues = [0.001, 0.01, 0.04, 0.2]
    decisions = feed(rule, [{"eval/mmd_pvalue": p} for p in pvalues])
    assert [d.stop for d in decisions] == [False, False, False, True]
    assert "alpha=0.05" in decisions[-1].reason


def test_two_sample_test_stop_consecutive():
    rule = TwoSampleTestStop(alpha=0.05, consecutive=2)
    decisions = feed(rule, [{"eval/mmd_pvalue": p} for p in [0.2, 0.01, 0.3, 0.5]])
    assert [d.stop for d in decisions] == [False, False, False, True]


def test_divergence_guard_nan_loss_stops_at_once():
    rule = DivergenceGuard()
    assert rule.update({"loss/d": 0.7, "loss/g": 1.2}) == Decision(False, "")
    decision = rule.update({"loss/d": 0.7, "loss/g": math.inf})
    assert decision.stop and "loss/g" in decision.reason
    assert DivergenceGuard().update({"loss/d": math.nan}).stop


def test_divergence_guard_saturation_needs_k_in_a_row():
    rule = DivergenceGuard(k=3)
    saturated, healthy = {"d/real": 0.995, "d/fake": 0.002}, {"d/real": 0.7, "d/fake": 0.3}
    sequence = [saturated, saturated, healthy, saturated, saturated, {"loss/d": 0.1}, saturated]
    assert [d.stop for d in feed(rule, sequence)] == [False, False, False, False, False, False, True]
    assert "saturated" in rule.update(saturated).reason


def test_divergence_guard_ignores_non_loss_nan():
    assert not DivergenceGuard().update({"eval/fid": math.nan, "loss/d": 0.5}).stop


def test_any_of_and_all_of():
    sequence = [{"eval/mmd_pvalue": 0.5, "eval/fid": 10.0}, {"eval/mmd_pvalue": 0.5, "eval/fid": 11.0}]
    any_rule = AnyOf(TwoSampleTestStop(0.05), Patience("eval/fid", patience=1))
    all_rule = AllOf(TwoSampleTestStop(0.05), Patience("eval/fid", patience=1))
    assert [d.stop for d in feed(any_rule, sequence)] == [True, True]
    decisions = feed(all_rule, sequence)
    assert [d.stop for d in decisions] == [False, True]
    assert "eval/mmd_pvalue" in decisions[1].reason and "eval/fid" in decisions[1].reason


def test_state_round_trip_resumes_exactly():
    def build():
        return AnyOf(Patience("eval/fid", patience=3), DivergenceGuard(k=2), TwoSampleTestStop(0.05, consecutive=2))

    first = [{"eval/fid": 10.0, "d/real": 0.999, "d/fake": 0.0}, {"eval/fid": 12.0, "eval/mmd_pvalue": 0.3}]
    rest = [{"eval/fid": 12.0, "eval/mmd_pvalue": 0.01}, {"eval/fid": 13.0}, {"eval/fid": 14.0}]
    uninterrupted = build()
    expected = feed(uninterrupted, first + rest)
    original = build()
    feed(original, first)
    state = json.loads(json.dumps(original.state_dict()))  # plain values only
    resumed = build()
    resumed.load_state_dict(copy.deepcopy(state))
    assert feed(resumed, rest) == expected[len(first):]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Patience("eval/fid", patience=0), "patience"),
        (lambda: Patience("eval/fid", patience=1, mode="lowest"), "mode"),
        (lambda: TwoSampleTestStop(alpha=1.5), "alpha"),
        (lambda: DivergenceGuard(real_threshold=0.1, fake_threshold=0.5), "fake_threshold"),
        (lambda: AnyOf(), "rules"),
        (lambda: AnyOf(Patience("eval/fid", 1)).load_state_dict({"rules": []}), "rules"),
        (lambda: Patience("eval/fid", 1).load_state_dict({}), "missing"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_is_better_orders_by_mode_and_never_prefers_nan():
    from evals.stopping import is_better

    assert is_better(1.0, 2.0, "min") and not is_better(2.0, 1.0, "min")
    assert is_better(2.0, 1.0, "max") and not is_better(1.0, 1.0, "max")
    assert not is_better(1.95, 2.0, "min", min_delta=0.1) and is_better(1.85, 2.0, "min", min_delta=0.1)
    assert is_better(5.0, None, "min") and is_better(5.0, float("nan"), "max")
    assert not is_better(float("nan"), None, "min") and not is_better(float("nan"), 1.0, "max")
