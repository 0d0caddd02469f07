"""Mode coverage on constructed samples, PacGAN's KL, Stacked MNIST's scores, and class histograms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evals.metrics import mixture_metrics
from evals.modes import (
    GRID25_STD,
    RING8_PACGAN_STD,
    RING8_STD,
    class_histogram,
    classes_covered,
    grid25_centres,
    hq_mode_kl,
    kl_to_uniform,
    mixture_centres,
    mixture_mode_coverage,
    ring8_centres,
    stacked_digits_histogram,
    stacked_mnist_scores,
)


def test_centres():
    ring = ring8_centres()
    assert ring.shape == (8, 2)
    # float64: 2 * (cos, sin) rounded, then squared, summed and rooted: a few ulps (~1e-15);
    # assert_allclose's default rtol=1e-7 would pass float32 centres.
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 2.0, rtol=1e-14)
    # Exact: cos(0) = 1 and sin(0) = 0 in IEEE arithmetic.
    np.testing.assert_allclose(ring[0], [2.0, 0.0], rtol=0, atol=0)
    grid = grid25_centres()
    assert grid.shape == (25, 2)
    assert sorted(set(grid[:, 0])) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len({tuple(c) for c in grid}) == 25
    assert mixture_centres("ring8")[1] == RING8_STD and mixture_centres("grid25")[1] == GRID25_STD


def test_pacgan_ring_is_veegans_at_half_the_radius_and_std():
    centres, std = mixture_centres("ring8-pacgan")
    assert std == RING8_PACGAN_STD == 0.01
    # float64: cos and sin rounded, squared, summed and rooted: a few ulps (~1e-15).
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1.0, rtol=1e-14)
    # Exact: halving the radius halves every coordinate (a power of two), angle by angle.
    np.testing.assert_array_equal(centres, mixture_centres("ring8")[0] / 2)


@pytest.mark.parametrize("name", ["ring8", "ring8-pacgan", "grid25"])
def test_samples_on_every_mode_cover_all(name):
    centres, std = mixture_centres(name)
    rng = np.random.default_rng(0)
    # Within 2.5 std of the centre in every direction: all high quality.
    offsets = rng.uniform(-1, 1, (len(centres) * 20, 2))
    offsets *= 2.5 * std / np.maximum(np.linalg.norm(offsets, axis=1, keepdims=True), 1)
    samples = np.repeat(centres, 20, axis=0) + offsets
    result = mixture_mode_coverage(samples, centres, std)
    assert result["modes_covered"] == len(centres) == result["num_modes"]
    assert result["hq_fraction"] == 1.0
    assert result["hq_counts"] == [20] * len(centres)


def test_collapse_to_one_mode():
    centres, std = mixture_centres("grid25")
    samples = np.tile(centres[7], (100, 1)) + 0.01
    result = mixture_mode_coverage(samples, centres, std)
    assert result["modes_covered"] == 1 and result["hq_fraction"] == 1.0
    assert result["hq_counts"][7] == 100


def test_off_mode_noise_is_not_high_quality():
    centres, std = mixture_centres("ring8")
    # 6 points exactly on modes 0..5, and 4 points halfway between centres and the origin.
    samples = np.concatenate([centres[:6], centres[:4] * 0.5])
    result = mixture_mode_coverage(samples, centres, std)
    assert result["modes_covered"] == 6
    # Exact: the mean of 6 trues in 10 is 6.0 / 10, correctly rounded, the same double as 0.6.
    assert result["hq_fraction"] == 0.6
    # Just inside and just outside the 3-std radius.
    edge = np.array([[2 + 2.99 * std, 0.0], [2 + 3.01 * std, 0.0]])
    assert mixture_mode_coverage(edge, centres, std)["hq_counts"][0] == 1


def test_min_count_makes_coverage_stricter():
    centres, std = mixture_centres("ring8")
    samples = np.concatenate([np.tile(centres[0], (10, 1)), centres[1:3]])
    assert mixture_mode_coverage(samples, centres, std)["modes_covered"] == 3
    assert mixture_mode_coverage(samples, centres, std, min_count=5)["modes_covered"] == 1


def test_seven_of_eight_modes_by_hand():
    centres, std = mixture_centres("ring8-pacgan")
    # 5 points exactly on each of modes 0..6: p = 1/7 on 7 of K = 8 modes,
    # KL = 7 * (1/7) log(8/7) = log(8/7).
    found = mixture_metrics(np.repeat(centres[:7], 5, axis=0), "ring8-pacgan")
    assert found["eval/modes"] == 7 and found["eval/hq_fraction"] == 1.0
    # float64: 7 terms p log(p K), each within a few ulps of log(8/7) / 7 (~1e-15 relative).
    assert found["eval/mode_kl"] == pytest.approx(math.log(8 / 7), rel=1e-14)


def test_mode_kl_counts_only_high_quality_samples():
    centres, std = mixture_centres("ring8-pacgan")
    # 8 HQ points (4 on mode 0, 2 on mode 1, 2 on mode 2) and 8 halfway to mode 3 (0.5 from
    # it, 50 std: not HQ). HQ histogram p = (1/2, 1/4, 1/4): KL = 1/2 log 4 + 2 (1/4) log 2
    # = 1.5 log 2; counting all 16 would give p = (1/4, 1/8, 1/8, 1/2) and KL = 1.25 log 2.
    on_mode = centres[[0, 0, 0, 0, 1, 1, 2, 2]]
    samples = np.concatenate([on_mode, np.tile(centres[3] * 0.5, (8, 1))])
    found = mixture_metrics(samples, "ring8-pacgan")
    # Exact: 8 trues in 16, a power of two.
    assert found["eval/hq_fraction"] == 0.5 and found["eval/modes"] == 3
    # float64: three terms, each one log and a product (~1e-16 relative each).
    assert found["eval/mode_kl"] == pytest.approx(1.5 * math.log(2), rel=1e-14)


def test_mode_kl_without_high_quality_samples_is_nan():
    centres, _ = mixture_centres("ring8")
    found = mixture_metrics(centres * 0.5, "ring8")
    assert found["eval/modes"] == 0 and found["eval/hq_fraction"] == 0.0
    assert math.isnan(found["eval/mode_kl"])
    assert hq_mode_kl([0, 0, 3]) == pytest.approx(math.log(3), rel=1e-14)


def every_stacked_class() -> np.ndarray:
    classes = np.arange(1000)
    return np.stack([classes // 100, classes // 10 % 10, classes % 10], axis=1)


def test_stacked_histogram_counts_digit_triples():
    counts = stacked_digits_histogram(np.array([[3, 1, 4], [3, 1, 4], [0, 0, 0], [9, 9, 9]]))
    assert counts.shape == (1000,) and counts.dtype == np.int64
    assert counts[314] == 2 and counts[0] == 1 and counts[999] == 1 and counts.sum() == 4
    np.testing.assert_array_equal(stacked_digits_histogram(every_stacked_class()), np.ones(1000))


def test_stacked_scores_of_every_class_once():
    scores = stacked_mnist_scores(every_stacked_class())
    assert scores["modes"] == 1000
    # float64: each p K = 0.001 * 1000 is 1 within an ulp, so each log is ~2e-16 and
    # 1000 terms of 0.001 * that sum to ~1e-16; kl_to_uniform clips at 0.
    assert scores["kl"] == pytest.approx(0.0, abs=1e-12)
    # float64: H sums 1000 terms of ~6.9e-3, rounding at most ~1000 eps64 H ~ 8e-13 absolute,
    # which exp turns into the same relative error.
    assert scores["exp_entropy"] == pytest.approx(1000.0, rel=1e-12)


def test_stacked_scores_of_one_class_and_of_two():
    collapsed = stacked_mnist_scores(np.tile([2, 7, 1], (50, 1)))
    assert collapsed["modes"] == 1
    # float64: one log.
    assert collapsed["kl"] == pytest.approx(math.log(1000), rel=1e-14)
    # Exact: p = 1, log 1 = 0, exp(-0) = 1.
    assert collapsed["exp_entropy"] == 1.0
    halves = stacked_mnist_scores(np.array([[0, 0, 1]] * 3 + [[5, 0, 0]] * 3))
    # p = (1/2, 1/2): KL = log 500, H = log 2; float64: a log and an exp, a few ulps.
    assert halves["modes"] == 2 and halves["kl"] == pytest.approx(math.log(500), rel=1e-14)
    assert halves["exp_entropy"] == pytest.approx(2.0, rel=1e-14)


def test_class_histogram_and_coverage():
    probs = np.eye(10)[[0, 0, 1, 2, 2, 2, 3, 9]]
    hist = class_histogram(probs)
    # Exact: integer counts divided by 8, a power of two, on both sides.
    np.testing.assert_allclose(hist, np.array([2, 1, 3, 1, 0, 0, 0, 0, 0, 1]) / 8, rtol=0, atol=0)
    assert classes_covered(hist, min_fraction=0) == 5
    assert classes_covered(hist, min_fraction=0.2) == 2
    assert classes_covered(hist) == 5
    # float64: a 4-term mean of 0.2, then a division by a 5-term sum: a few ulps (~1e-16).
    np.testing.assert_allclose(class_histogram(np.full((4, 5), 0.2), hard=False), np.full(5, 0.2), rtol=1e-14)


def test_kl_to_uniform():
    # float64: each p * K is 1 within ~3 eps64, so 10 terms of 0.1 * log(p K) sum to <= 3 eps64 = 7e-16.
    assert kl_to_uniform(np.full(10, 0.1)) == pytest.approx(0.0, abs=1e-15)
    # float64: one log (numpy's and libm's differ by a few ulps at most), and 0.5 log 2 + 0.5 log 2.
    assert kl_to_uniform(np.eye(10)[3]) == pytest.approx(math.log(10), rel=1e-14)
    assert kl_to_uniform([1, 1, 0, 0]) == pytest.approx(math.log(2), rel=1e-14)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mixture_mode_coverage(np.zeros((3, 3)), ring8_centres(), 0.1), "centres must be"),
        (lambda: mixture_mode_coverage(np.zeros((0, 2)), ring8_centres(), 0.1), "samples must be"),
        (lambda: mixture_mode_coverage(np.zeros((3, 2)), ring8_centres(), 0.0), "std"),
        (lambda: mixture_centres("ring9"), "ring8-pacgan"),
        (lambda: hq_mode_kl([1, -1]), "hq_counts"),
        (lambda: stacked_digits_histogram(np.array([[1, 2, 10]])), "digits 0..9"),
        (lambda: stacked_digits_histogram(np.zeros((2, 2), dtype=int)), r"int \(N, 3\)"),
        (lambda: stacked_digits_histogram(np.zeros((2, 3))), r"int \(N, 3\)"),
        (lambda: stacked_mnist_scores(np.zeros((0, 3), dtype=int)), "at least one image"),
        (lambda: class_histogram(np.zeros(4)), "probs must be"),
        (lambda: kl_to_uniform([-1, 2]), "non-negative"),
        (lambda: classes_covered([1, 1], min_fraction=2), "min_fraction"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_matched_accuracy_finds_the_best_one_to_one_matching():
    from evals.modes import matched_accuracy

    # Category k is digit (k + 3) mod 10, except 5 of 100 samples: 95% after matching.
    categories = np.arange(100) % 10
    classes = (categories + 3) % 10
    classes[:5] = (classes[:5] + 1) % 10
    assert matched_accuracy(categories, classes, 10, 10) == 0.95
    # Two categories that both draw digit 0 can match it only once.
    assert matched_accuracy([0, 0, 1, 1], [0, 0, 0, 0], 2, 10) == 0.5
