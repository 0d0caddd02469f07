"""One evaluation's metrics under zerosum's keys, from features already gathered.

These helpers compute, once, the numbers a training loop logs and feeds to a
stopping rule. They do no I/O and no collectives: the caller merges
``FeatureStats`` (all_reduce of ``to_tensor()``) and gathers the feature rows
that MMD and KID need, then calls these on one rank.

Keys: ``eval/fid``, ``eval/kid``, ``eval/kid_std``, ``eval/mmd2``,
``eval/mmd_pvalue``, ``eval/modes``, ``eval/hq_fraction``, ``eval/mode_kl``,
``eval/classes_covered``, ``eval/class_kl``.
"""

from __future__ import annotations

from evals.fid import FIDReference
from evals.mmd import DEFAULT_PERMUTATIONS, kid, mmd_permutation_test
from evals.modes import (
    class_histogram,
    classes_covered,
    hq_mode_kl,
    kl_to_uniform,
    mixture_centres,
    mixture_mode_coverage,
)
from evals.stats import FeatureStats

__all__ = ["FEATURE_METRICS", "class_metrics", "feature_metrics", "mixture_metrics"]

FEATURE_METRICS = ("fid", "kid", "mmd")


def feature_metrics(fake=None, real=None, *, metrics=FEATURE_METRICS, reference: FIDReference | None = None,
                    fake_stats: FeatureStats | None = None, kernel: str = "gaussian",
                    num_permutations: int = DEFAULT_PERMUTATIONS, kid_subsets: int = 100, kid_subset_size: int = 1000,
                    seed: int = 0) -> dict[str, float]:
    """FID, KID and the MMD test between generated and real features.

    Args:
        fake, real: features (n, D) and (m, D), needed for "kid" and "mmd".
        metrics: any of "fid", "kid", "mmd".
        reference: the prepared real side for "fid".
        fake_stats: merged generated statistics for "fid"; None builds them from ``fake``.
        kernel: MMD kernel, "gaussian" or "cubic".
        num_permutations: permutations of the MMD test.
        kid_subsets, kid_subset_size: KID subsets; the size is capped at min(n, m).
        seed: seeds the permutations and the KID subsets.

    Returns:
        {"eval/fid", "eval/kid", "eval/kid_std", "eval/mmd2", "eval/mmd_pvalue"}, as requested.
    """
    unknown = sorted(set(metrics) - set(FEATURE_METRICS))
    if unknown:
        raise ValueError(f"metrics must be among {FEATURE_METRICS}; got {unknown}")
    needs_rows = {"kid", "mmd"} & set(metrics)
    if needs_rows and (fake is None or real is None):
        raise ValueError(f"fake and real features are required for {sorted(needs_rows)}")
    out: dict[str, float] = {}
    if "fid" in metrics:
        if reference is None:
            raise ValueError("reference (a FIDReference of the real side) is required for 'fid'")
        out["eval/fid"] = reference.fid(fake_stats if fake_stats is not None else FeatureStats.from_features(fake))
    if "kid" in metrics:
        size = min(kid_subset_size, len(fake), len(real))
        result = kid(fake, real, num_subsets=kid_subsets, subset_size=size, seed=seed)
        out["eval/kid"], out["eval/kid_std"] = result.mean, result.std
    if "mmd" in metrics:
        test = mmd_permutation_test(fake, real, kernel=kernel, num_permutations=num_permutations, seed=seed)
        out["eval/mmd2"], out["eval/mmd_pvalue"] = test.mmd2, test.pvalue
    return out


def mixture_metrics(samples, mixture: str, threshold_std: float = 3.0, min_count: int = 1) -> dict[str, float]:
    """PacGAN's mixture scores of 2-D samples float (N, 2) of a named mixture (evals.modes).

    {"eval/modes": modes with >= min_count HQ samples, "eval/hq_fraction": share of samples
    within threshold_std stds of their nearest centre, "eval/mode_kl": KL of the HQ
    samples' mode histogram against uniform (``hq_mode_kl``; nan when no sample is HQ)}.
    """
    centres, std = mixture_centres(mixture)
    coverage = mixture_mode_coverage(samples, centres, std, threshold_std, min_count)
    return {"eval/modes": float(coverage["modes_covered"]), "eval/hq_fraction": coverage["hq_fraction"],
            "eval/mode_kl": hq_mode_kl(coverage["hq_counts"])}


def class_metrics(probs, min_fraction: float | None = None) -> dict[str, float]:
    """{"eval/classes_covered", "eval/class_kl"} from classifier probabilities (N, K)."""
    hist = class_histogram(probs)
    return {"eval/classes_covered": float(classes_covered(hist, min_fraction)), "eval/class_kl": kl_to_uniform(hist)}
