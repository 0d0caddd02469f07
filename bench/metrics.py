"""Benchmark evals against the reference libraries, in one process, on the same inputs.

    .venv/bin/python bench/metrics.py                 # everything (about 2 minutes on 2 idle cores)
    .venv/bin/python bench/metrics.py --only fid,perm # a subset: fid, kid, perm, inception

Each section prints evals' time, the reference's time, their ratio (reference /
evals, higher is better), the agreement of the values, and the target from
issue 3. Timings are the minimum over repeats, and the two sides alternate so
that load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from evals.fid import FIDReference  # noqa: E402
from evals.mmd import kid, mmd_permutation_test  # noqa: E402
from evals.stats import FeatureStats  # noqa: E402

MNIST_TEST = REPO_ROOT.parent / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
SECTIONS = ("fid", "kid", "perm", "inception")


def timed(fn, repeats: int):
    """(best seconds, last result) over ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def alternate(fns: dict, repeats: int) -> dict:
    """Run each fn ``repeats`` times, interleaved; -> {name: (best seconds, result)}."""
    best = {name: (float("inf"), None) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            seconds, result = timed(fn, 1)
            best[name] = (min(best[name][0], seconds), result)
    return best


def report(label: str, ours: float, theirs: float, target: str, agreement: str = "") -> None:
    ratio = theirs / ours
    print(f"{label:<44} evals {ours:8.3f} s | reference {theirs:8.3f} s | ratio {ratio:6.2f}x "
          f"(target {target}) {agreement}")


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def synthetic_features(rng, count: int, dim: int, shift: float) -> np.ndarray:
    """Non-negative, correlated, Inception-like features with a decaying spectrum."""
    scales = 1.0 / np.sqrt(1.0 + np.arange(dim) / 16.0)
    mixing = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, dim)))[0] * scales
    return np.maximum(rng.standard_normal((count, dim)) @ mixing.T * 0.3 + 0.2 + shift, 0)


def bench_fid(args) -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(1)
    real = FeatureStats.from_features(synthetic_features(rng, args.fid_samples, 2048, 0.0))
    fake = FeatureStats.from_features(synthetic_features(rng, args.fid_samples, 2048, 0.01))
    mu_r, s_r, mu_f, s_f = real.mean(), real.cov(), fake.mean(), fake.cov()
    prepare_s, reference = timed(lambda: FIDReference(mu_r, s_r), 1)
    ours_s, ours = timed(lambda: reference.fid(mu_f, s_f), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pfid_s, pfid = timed(lambda: float(calculate_frechet_distance(mu_f, s_f, mu_r, s_r)), 1)
    tf_s, tf = timed(lambda: fid_statistics_to_metric({"mu": mu_f, "sigma": s_f}, {"mu": mu_r, "sigma": s_r},
                                                     False)["frechet_inception_distance"], 2)
    print(f"FID, D=2048: evals {ours:.10g}, pytorch-fid {pfid:.10g}, torch-fidelity {tf:.10g}; "
          f"reference side prepared once in {prepare_s:.3f} s (eigh)")
    report("FID vs pytorch-fid calculate_frechet_distance", ours_s, pfid_s, ">= 10x",
           f"rel diff {relative(ours, pfid):.1e}")
    report("FID vs torch-fidelity fid_statistics_to_metric", ours_s, tf_s, ">= 3x",
           f"rel diff {relative(ours, tf):.1e}")


def bench_kid(args) -> None:
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(2)
    x64 = torch.from_numpy(synthetic_features(rng, args.kid_samples, 2048, 0.0))
    y64 = torch.from_numpy(synthetic_features(rng, args.kid_samples, 2048, 0.01))
    options = dict(kid_subsets=100, kid_subset_size=1000, verbose=False, rng_seed=2020, kid_kernel="poly",
                   kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
    exact = None
    for dtype in args.kid_dtypes:
        x, y = x64.to(dtype), y64.to(dtype)
        runs = alternate({"evals": lambda x=x, y=y: kid(x, y, seed=2020),
                          "torch-fidelity": lambda x=x, y=y: kid_features_to_metric(x, y, **options)}, args.kid_repeats)
        (ours_s, ours), (tf_s, tf) = runs["evals"], runs["torch-fidelity"]
        tf_mean = tf["kernel_inception_distance_mean"]
        exact = ours.mean if dtype == torch.float64 else exact
        agreement = f"rel diff {relative(ours.mean, tf_mean):.1e}"
        if dtype == torch.float32 and exact is not None:
            agreement += (f"; vs float64 value: evals {relative(ours.mean, exact):.1e}, "
                          f"torch-fidelity {relative(tf_mean, exact):.1e}")
        print(f"KID {args.kid_samples}x2048 {str(dtype)[6:]}: evals {ours.mean:.10g} +- {ours.std:.4g}, "
              f"torch-fidelity {tf_mean:.10g} +- {tf['kernel_inception_distance_std']:.4g}")
        report(f"KID vs torch-fidelity ({str(dtype)[6:]} features)", ours_s, tf_s, ">= 1.0x", agreement)


def bench_permutation(args) -> None:
    rng = np.random.default_rng(3)
    x = torch.from_numpy(synthetic_features(rng, 1000, 2048, 0.0))
    y = torch.from_numpy(synthetic_features(rng, 1000, 2048, 0.002))
    times = []
    for _ in range(5):
        seconds, result = timed(lambda: mmd_permutation_test(x, y, num_permutations=1000, seed=0), 1)
        times.append(seconds)
    print(f"MMD permutation test n=m=1000, D=2048 float64, 1000 permutations, gaussian kernel: "
          f"mmd2 {result.mmd2:.4g}, p {result.pvalue:.4g}")
    print(f"{'  time incl. kernel build':<44} min {min(times):.3f} s, median {sorted(times)[2]:.3f} s "
          f"(target < 0.5 s; naive recomputation ~190 s)")


def mnist_digits(count: int) -> torch.Tensor:
    if MNIST_TEST.is_file():
        with gzip.open(MNIST_TEST, "rb") as handle:
            raw = np.frombuffer(handle.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
        return torch.from_numpy(raw[:count].copy())
    return torch.randint(0, 256, (count, 1, 28, 28), dtype=torch.uint8)


def bench_inception(args) -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from evals.features import InceptionExtractor, images_to_uint8

    digits = mnist_digits(args.inception_images)
    ours_model = InceptionExtractor(batch_size=args.inception_images)
    theirs_model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                               feature_extractor_weights_path=str(ours_model.weights_path))
    rgb = images_to_uint8(digits)

    def theirs():
        with torch.no_grad():
            return theirs_model(rgb)[0]

    runs = alternate({"evals": lambda: ours_model(digits), "torch-fidelity": theirs}, args.repeats)
    (ours_s, ours), (tf_s, tf) = runs["evals"], runs["torch-fidelity"]
    count = args.inception_images
    print(f"Inception pool3 on {count} MNIST digits, CPU, {torch.get_num_threads()} threads: "
          f"evals {count / ours_s:.1f} img/s, torch-fidelity {count / tf_s:.1f} img/s")
    report("Inception features vs torch-fidelity extractor", ours_s, tf_s, ">= 1.4x",
           f"max abs diff {float((ours - tf.double()).abs().max()):.1e} (need <= 1e-4)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--fid-samples", type=int, default=5000)
    parser.add_argument("--kid-samples", type=int, default=10000)
    parser.add_argument("--kid-dtype", default="float64,float32", help="float64, float32 or both")
    parser.add_argument("--kid-repeats", type=int, default=2, help="repeats for the KID timing")
    parser.add_argument("--inception-images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="repeats for the Inception timing")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"--only must name some of {SECTIONS}; got {unknown}")
    args.kid_dtypes = [getattr(torch, name.strip()) for name in args.kid_dtype.split(",")]
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}; "
          f"load average {load} (other processes skew timings)")
    runners = {"fid": bench_fid, "kid": bench_kid, "perm": bench_permutation, "inception": bench_inception}
    for name in SECTIONS:
        if name in chosen:
            runners[name](args)


if __name__ == "__main__":
    main()
