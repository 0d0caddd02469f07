"""Mode coverage on constructed samples, and class histograms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evals.modes import (
    GRID25_STD,
    RING8_STD,
    class_histogram,
    classes_covered,
    grid25_centres,
    kl_to_uniform,
    mixture_centres,
    mixture_mode_coverage,
    ring8_centres,
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


@pytest.mark.parametrize("name", ["ring8", "grid25"])
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
        (lambda: mixture_centres("ring9"), "ring8"),
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
