"""FID's bias at small sample counts: what an eval's `num_samples` buys.

Two samples of the same distribution (MNIST training digits against MNIST test digits,
so the true distance is close to 0) are scored at N = 500 ... 10,000 each, with the
features in-training evals use by default for MNIST (zerosum's classifier features,
trained once and cached by `zerosum featurizer`). FID is biased upwards, roughly by
c/N (Chong & Forsyth 2020), so its value at equal distributions is mostly that bias;
KID is unbiased, and its mean stays near 0 at every N while its spread grows. Each row
is the mean and standard deviation over `--repeats` draws.

    .venv/bin/python bench/fid_bias.py [--repeats 3] [--counts 500,1000,2000,5000,10000]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def features_of(split: str, spec, extractor) -> torch.Tensor:
    """Classifier features, float64 (N, D), of every image of an MNIST split."""
    from zerosum.data import load_dataset
    from zerosum.evaluation.reference import extract

    dataset = load_dataset(spec.data, split, seed=0)
    return extract(extractor, dataset.samples, spec.data.scale, is_image=True)[0]


def main() -> int:
    from evals.fid import FIDReference
    from evals.metrics import feature_metrics
    from evals.stats import FeatureStats
    from zerosum.config import load_job
    from zerosum.evaluation.featurizer import prepare_eval_spec
    from zerosum.evaluation.plan import build_extractor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--counts", default="500,1000,2000,5000,10000")
    args = parser.parse_args()
    counts = [int(n) for n in args.counts.split(",")]
    spec = prepare_eval_spec(load_job(REPO / "jobs" / "mnist-dcgan.yaml"))
    extractor = build_extractor(spec, (1, 28, 28), torch.device("cpu"))
    start = time.perf_counter()
    train, test = features_of("train", spec, extractor), features_of("test", spec, extractor)
    print(f"features: {len(train)} train and {len(test)} test digits in {time.perf_counter() - start:.0f} s")
    print(f"{'N':>6} {'FID mean':>9} {'FID std':>8} {'KID mean':>9} {'KID std':>8} {'s/eval':>7}")
    generator = torch.Generator().manual_seed(0)
    for count in counts:
        fids, kids, seconds = [], [], []
        for repeat in range(args.repeats):
            a = train[torch.randperm(len(train), generator=generator)[:count]]
            b = test[torch.randperm(len(test), generator=generator)[:count]]
            began = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # rank-deficient covariances at small N are the point
                reference = FIDReference.from_stats(FeatureStats.from_features(b))
                scores = feature_metrics(a, b, metrics=["fid", "kid"], reference=reference,
                                         kid_subset_size=min(count, 1000), seed=repeat)
            seconds.append(time.perf_counter() - began)
            fids.append(scores["eval/fid"])
            kids.append(scores["eval/kid"])
        print(f"{count:6d} {statistics.mean(fids):9.3f} {statistics.stdev(fids):8.3f} "
              f"{statistics.mean(kids):9.5f} {statistics.stdev(kids):8.5f} {statistics.mean(seconds):7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
