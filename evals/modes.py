"""Mode coverage: how many modes of the real distribution the generator reaches.

Known 2-D mixtures (VEEGAN, Srivastava et al. 2017; reused by PacGAN, Lin et al. 2018):

- ``ring8``: VEEGAN's ring, 8 Gaussians with centres evenly spaced on a circle of
  radius 2, std 0.02 (``RING8_STD``);
- ``ring8-pacgan``: PacGAN's ring, the same 8 angles on a circle of radius 1, std 0.01
  (``RING8_PACGAN_STD``), as in fjxmlzn/PacGAN
  ``synthetic_data_experiments/2DRing_GAN&PacGAN/config.py`` (``MEANS``, ``VARIANCES``);
- ``grid25``: 25 Gaussians with centres on the 5 x 5 grid {-4, -2, 0, 2, 4}^2,
  std 0.05 (``GRID25_STD``).

Definitions used by ``mixture_mode_coverage``:

- a sample is *high quality* (HQ) when its Euclidean distance to the nearest
  centre is at most ``threshold_std`` (3) standard deviations;
- a mode is *covered* when at least ``min_count`` HQ samples have it as their
  nearest centre. The default ``min_count=1`` is the VEEGAN count of modes
  captured; pass a larger value (for example a fraction of N / num_modes) for a
  stricter test that ignores a few stray samples.

``hq_mode_kl`` is PacGAN's KL (fjxmlzn/PacGAN,
``synthetic_data_experiments/PacGAN/pacgan/extensions.py``, ``MetricLogger``): the HQ
samples' mode histogram p against uniform, sum p log(p K). MetricLogger logs that
histogram's entropy H; the KL reported in the paper is log K - H, the same number.

Stacked MNIST (VEEGAN; PacGAN Table 2) has 1000 modes, one per (R, G, B) triple of digits:
``stacked_digits_histogram`` and ``stacked_mnist_scores`` score the per-channel digits that
a classifier gives each generated image.

For labelled image data the classifier's probabilities stand in for modes:
``class_histogram``, ``classes_covered`` and ``kl_to_uniform``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "matched_accuracy",
    "GRID25_STD",
    "MIXTURES",
    "RING8_PACGAN_STD",
    "RING8_STD",
    "STACKED_CLASSES",
    "class_histogram",
    "classes_covered",
    "grid25_centres",
    "hq_mode_kl",
    "kl_to_uniform",
    "mixture_centres",
    "mixture_mode_coverage",
    "ring8_centres",
    "stacked_digits_histogram",
    "stacked_mnist_scores",
]

RING8_STD = 0.02
RING8_PACGAN_STD = 0.01
GRID25_STD = 0.05
# Stacked MNIST: a class per (R, G, B) digit triple, 100 d_R + 10 d_G + d_B.
STACKED_CLASSES = 1000


def _to_numpy(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def ring8_centres(radius: float = 2.0) -> np.ndarray:
    """Centres of the ring8 mixture: float64 (8, 2), angles 0, pi/4, ..., 7 pi/4."""
    if radius <= 0:
        raise ValueError(f"radius must be > 0; got {radius}")
    angles = np.arange(8) * (2 * math.pi / 8)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid25_centres(spacing: float = 2.0) -> np.ndarray:
    """Centres of the grid25 mixture: float64 (25, 2), {-2, -1, 0, 1, 2}^2 * spacing."""
    if spacing <= 0:
        raise ValueError(f"spacing must be > 0; got {spacing}")
    ticks = np.arange(-2, 3) * spacing
    xs, ys = np.meshgrid(ticks, ticks, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


# Each known mixture's (centres, std), by name (zerosum's catalog lists the same names).
MIXTURES = {
    "ring8": lambda: (ring8_centres(), RING8_STD),
    "ring8-pacgan": lambda: (ring8_centres(radius=1.0), RING8_PACGAN_STD),
    "grid25": lambda: (grid25_centres(), GRID25_STD),
}


def mixture_centres(name: str) -> tuple[np.ndarray, float]:
    """(centres float64 (K, 2), std) of a named mixture: "ring8", "ring8-pacgan" or "grid25"."""
    if name not in MIXTURES:
        raise ValueError(f"name must be one of {', '.join(MIXTURES)}; got {name!r}")
    return MIXTURES[name]()


def mixture_mode_coverage(samples, centres, std: float, threshold_std: float = 3.0,
                          min_count: int = 1) -> dict:
    """Modes covered and high-quality fraction of 2-D (or any-D) samples.

    Args:
        samples: float (N, D) generated points, N >= 1.
        centres: float (K, D) mixture centres.
        std: the mixture components' standard deviation, > 0.
        threshold_std: HQ radius in units of std.
        min_count: HQ samples a mode needs to count as covered, >= 1.

    Returns:
        dict with ``modes_covered`` (int), ``num_modes`` (int), ``hq_fraction``
        (float in [0, 1]), ``hq_counts`` (list of K ints: HQ samples per mode)
        and ``nearest`` (int64 (N,) index of each sample's nearest centre).
    """
    points, centres = _to_numpy(samples, "samples"), _to_numpy(centres, "centres")
    if points.ndim != 2 or points.shape[0] < 1:
        raise ValueError(f"samples must be (N, D) with N >= 1; got shape {points.shape}")
    if centres.ndim != 2 or centres.shape[1] != points.shape[1]:
        raise ValueError(f"centres must be (K, {points.shape[1]}); got shape {centres.shape}")
    if std <= 0 or threshold_std <= 0 or int(min_count) < 1:
        raise ValueError(
            f"std and threshold_std must be > 0 and min_count >= 1; got {std}, {threshold_std}, {min_count}"
        )
    sq_dist = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    nearest = sq_dist.argmin(axis=1)
    nearest_dist = np.sqrt(sq_dist[np.arange(points.shape[0]), nearest])
    high_quality = nearest_dist <= threshold_std * std
    hq_counts = np.bincount(nearest[high_quality], minlength=centres.shape[0])
    return {
        "modes_covered": int((hq_counts >= int(min_count)).sum()),
        "num_modes": int(centres.shape[0]),
        "hq_fraction": float(high_quality.mean()),
        "hq_counts": [int(c) for c in hq_counts],
        "nearest": nearest.astype(np.int64),
    }


def class_histogram(probs, hard: bool = True) -> np.ndarray:
    """Fraction of samples per class: float64 (K,) summing to 1.

    Args:
        probs: float (N, K) class probabilities (rows sum to 1), N >= 1.
        hard: count each sample's argmax class (True) or average the
            probabilities (False).
    """
    probs = _to_numpy(probs, "probs")
    if probs.ndim != 2 or probs.shape[0] < 1 or probs.shape[1] < 1:
        raise ValueError(f"probs must be (N, K) with N, K >= 1; got shape {probs.shape}")
    if hard:
        counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]).astype(np.float64)
        return counts / counts.sum()
    return probs.mean(axis=0) / probs.mean(axis=0).sum()


def _check_hist(hist) -> np.ndarray:
    hist = _to_numpy(hist, "hist")
    if hist.ndim != 1 or hist.shape[0] < 1 or (hist < 0).any() or hist.sum() <= 0:
        raise ValueError(f"hist must be a non-negative (K,) vector with a positive sum; got {hist!r}")
    return hist / hist.sum()


def classes_covered(hist, min_fraction: float | None = None) -> int:
    """Number of classes whose share of samples is at least ``min_fraction``.

    ``min_fraction`` None means 0.1 / K (a tenth of the uniform share); 0 counts
    every class with at least one sample.
    """
    hist = _check_hist(hist)
    threshold = 0.1 / hist.shape[0] if min_fraction is None else float(min_fraction)
    if not 0 <= threshold <= 1:
        raise ValueError(f"min_fraction must be in [0, 1]; got {min_fraction}")
    if threshold == 0:
        return int((hist > 0).sum())
    return int((hist >= threshold).sum())


def kl_to_uniform(hist) -> float:
    """KL(hist || uniform) in nats, >= 0; 0 for a uniform histogram, log K for one class."""
    hist = _check_hist(hist)
    nonzero = hist[hist > 0]
    return float(max((nonzero * np.log(nonzero * hist.shape[0])).sum(), 0.0))


def hq_mode_kl(hq_counts) -> float:
    """PacGAN's KL of the HQ samples' mode histogram against uniform, in nats.

    hq_counts: non-negative (K,) HQ samples per mode (``mixture_mode_coverage``'s
    ``hq_counts``). Returns sum p log(p K) with p = hq_counts / their sum: 0 when the HQ
    samples spread evenly, log K when they all sit on one mode. With no HQ sample at all
    there is no histogram and the KL is undefined: float('nan').
    """
    counts = _to_numpy(hq_counts, "hq_counts")
    if counts.ndim != 1 or counts.shape[0] < 1 or (counts < 0).any():
        raise ValueError(f"hq_counts must be a non-negative (K,) vector; got {counts!r}")
    return math.nan if counts.sum() == 0 else kl_to_uniform(counts)


def matched_accuracy(categories, classes, num_categories: int, num_classes: int) -> float:
    """Accuracy of unsupervised categories after the best one-to-one matching to classes.

    categories, classes: int (N,), e.g. InfoGAN's code of each sample and the class a domain
    classifier gives it. The contingency table counts[k, c] is matched by the Hungarian
    algorithm (scipy's linear_sum_assignment, maximising matched counts), as clustering
    accuracy is scored; returns matched counts / N in [0, 1].
    """
    from scipy.optimize import linear_sum_assignment

    cats = _to_numpy(categories, "categories").astype(np.int64).ravel()
    labels = _to_numpy(classes, "classes").astype(np.int64).ravel()
    if cats.shape != labels.shape or cats.size == 0:
        raise ValueError(f"categories and classes must be equal-length, non-empty; got {cats.shape}, {labels.shape}")
    counts = np.zeros((num_categories, num_classes), dtype=np.int64)
    np.add.at(counts, (cats, labels), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / cats.size)



def stacked_digits_histogram(channel_digits) -> np.ndarray:
    """Samples per Stacked MNIST class: int64 (1000,), class 100 d_R + 10 d_G + d_B.

    channel_digits: int (N, 3), each image's (R, G, B) digits in 0..9 (N >= 0).
    """
    digits = np.asarray(channel_digits.cpu() if isinstance(channel_digits, torch.Tensor) else channel_digits)
    if digits.ndim != 2 or digits.shape[1] != 3 or not np.issubdtype(digits.dtype, np.integer):
        raise ValueError(f"channel_digits must be int (N, 3); got {digits.dtype} {digits.shape}")
    if digits.size and (digits.min() < 0 or digits.max() > 9):
        raise ValueError(f"channel_digits must be digits 0..9; got [{digits.min()}, {digits.max()}]")
    classes = digits.astype(np.int64) @ np.array([100, 10, 1], dtype=np.int64)
    return np.bincount(classes, minlength=STACKED_CLASSES)


def stacked_mnist_scores(channel_digits) -> dict:
    """VEEGAN's and PacGAN's Stacked MNIST scores of int (N, 3) per-channel digits, N >= 1.

    Returns {"modes": int, classes with at least one sample (of 1000); "kl": float,
    KL(hist || uniform over 1000) in nats, 0 (all even) to log 1000 (one class);
    "exp_entropy": float, exp(H(hist)), the effective number of classes, 1 to 1000}.
    """
    counts = stacked_digits_histogram(channel_digits)
    if counts.sum() == 0:
        raise ValueError("channel_digits must hold at least one image")
    share = counts[counts > 0] / counts.sum()
    return {"modes": int((counts > 0).sum()), "kl": kl_to_uniform(counts),
            "exp_entropy": float(np.exp(-(share * np.log(share)).sum()))}
