"""A suite's protocol: the same measurement for every row's samples and for real data.

Each protocol maps samples (N, *sample_shape) in the data's scale to the suite's columns
(`suite.PROTOCOL_COLUMNS`), with the papers' definitions:

- ``mixture`` (PacGAN, `fjxmlzn/PacGAN` pacgan/extensions.py MetricLogger): each sample's
  nearest mode by distance / std; high quality within ``threshold_std``; modes = modes with
  at least one HQ sample; KL of the HQ samples' mode histogram against uniform.
- ``stacked-mnist`` (VEEGAN, PacGAN Table 2): each channel classified by the MNIST domain
  classifier; modes = 3-digit classes with at least one sample; KL of the 1,000-class
  histogram against uniform; exp-entropy of that histogram.
- ``fid`` (Lucic et al. 2018): Inception FID (TF-FID weights, grey tiled to 3 channels)
  against the test split's first ``num_samples`` reals in a fixed random order, and the
  same with the domain classifier's features (classifier-FID).
- ``classes`` (the article's experiment): classes covered (share >= a tenth of uniform)
  and the KL of the classifier's class histogram against uniform.
"""

from __future__ import annotations

import math

import torch

from zerosum.benchmark.suite import ProtocolSpec
from zerosum.config import JobSpec
from zerosum.data import load_dataset, to_unit_images


def eval_spec(spec: JobSpec, metrics: list[str], features: str, num_samples: int) -> JobSpec:
    """spec with an eval section that asks for `metrics` on `features`, prepared (a domain
    classifier trained and cached if the features need one)."""
    from zerosum.data import images_only
    from zerosum.evaluation.featurizer import prepare_eval_spec

    evals = spec.eval.model_copy(update={"metrics": metrics, "features": features, "num_samples": num_samples})
    return prepare_eval_spec(spec.model_copy(update={"data": images_only(spec.data), "eval": evals}))


def mixture_scores(samples: torch.Tensor, protocol: ProtocolSpec) -> dict[str, float]:
    from evals.metrics import mixture_metrics

    found = mixture_metrics(samples.reshape(len(samples), -1), protocol.data, protocol.threshold_std)
    return {"modes": found["eval/modes"], "hq_fraction": found["eval/hq_fraction"], "kl": found["eval/mode_kl"]}


def stacked_scores(samples: torch.Tensor, spec: JobSpec) -> dict[str, float]:
    from evals.modes import stacked_mnist_scores
    from zerosum.evaluation.stacked import channel_digits

    digits = channel_digits(to_unit_images(samples, spec.data.scale), root=spec.data.root)
    scores = stacked_mnist_scores(digits.numpy())
    return {"modes": float(scores["modes"]), "kl": float(scores["kl"]), "exp_entropy": float(scores["exp_entropy"])}


def fid_scores(samples: torch.Tensor, spec: JobSpec, protocol: ProtocolSpec, cache_features: bool) -> dict[str, float]:
    from zerosum.evaluation.offline import score_samples

    inception = score_samples(eval_spec(spec, ["fid"], "inception", protocol.num_samples), samples, spec.data.scale,
                              cache_features=cache_features)
    domain = score_samples(eval_spec(spec, ["fid"], "classifier", protocol.num_samples), samples, spec.data.scale,
                           cache_features=cache_features)
    return {"fid": inception["eval/fid"], "classifier_fid": domain["eval/fid"]}


def class_scores(samples: torch.Tensor, spec: JobSpec, protocol: ProtocolSpec) -> dict[str, float]:
    from zerosum.evaluation.offline import score_samples

    found = score_samples(eval_spec(spec, ["classes"], "classifier", protocol.num_samples), samples, spec.data.scale)
    return {"classes": found["eval/classes_covered"], "kl": found["eval/class_kl"]}


def protocol_scores(protocol: ProtocolSpec, spec: JobSpec, samples: torch.Tensor,
                    reals: bool = False) -> dict[str, float]:
    """The suite's columns for `samples` (N, *sample_shape) in spec.data's scale; N must be
    the protocol's num_samples (a smaller draw would bias FID up and KL down). reals: the
    samples are the real row's, the same draw on every run, so their Inception and
    classifier features are cached on disk by content (the other protocols take seconds)."""
    if len(samples) != protocol.num_samples:
        raise ValueError(f"the protocol scores {protocol.num_samples} samples; got {len(samples)}")
    if protocol.kind == "mixture":
        return mixture_scores(samples, protocol)
    if protocol.kind == "stacked-mnist":
        return stacked_scores(samples, spec)
    if protocol.kind == "fid":
        return fid_scores(samples, spec, protocol, cache_features=reals)
    return class_scores(samples, spec, protocol)


def protocol_notes(protocol: ProtocolSpec, spec: JobSpec) -> list[str]:
    """What the table's reader needs to trust a classifier-based column: the domain
    classifier's own test accuracy (Stacked MNIST reads 3 digits: about accuracy^3 right)."""
    if protocol.kind == "mixture":
        return []
    from evals.classifier import load_classifier

    prepared = eval_spec(spec, ["classes"] if protocol.kind != "fid" else ["fid"], "classifier", protocol.num_samples)
    _, meta = load_classifier(prepared.eval.featurizer_path)
    accuracy = float(meta["test_accuracy"])
    if protocol.kind == "stacked-mnist":
        return [f"each channel read by the {meta['dataset']} classifier, test accuracy {accuracy:.2%} "
                f"(all three digits right: about {accuracy ** 3:.2%})"]
    return [f"classes and classifier features from the {meta['dataset']} classifier, test accuracy {accuracy:.2%}"]


def real_samples(protocol: ProtocolSpec, spec: JobSpec, seed: int) -> torch.Tensor:
    """num_samples training reals (N, *sample_shape) in spec.data's scale, a random subset
    seeded by `seed`: the ceiling row. The FID reference is the test split, so real-vs-real
    FID measures sampling noise, not memorised images."""
    from zerosum.data import images_only

    data = images_only(spec.data)
    if data.num_samples is not None and data.num_samples < protocol.num_samples:
        data = data.model_copy(update={"num_samples": protocol.num_samples})
    reals = load_dataset(data, "train", seed=seed).samples
    if len(reals) < protocol.num_samples:
        raise ValueError(f"{protocol.data} has {len(reals)} training samples; the protocol draws {protocol.num_samples}")
    chosen = torch.randperm(len(reals), generator=torch.Generator().manual_seed(seed))[: protocol.num_samples]
    return reals[chosen]


def mean_and_error(values: list[float]) -> tuple[float, float]:
    """(mean, standard error = sample std / sqrt(n)); the error is nan for one value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)
