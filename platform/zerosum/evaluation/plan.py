"""The evaluation plan of a job: which features, which checks, which stopping rule.

Pure decisions over a JobSpec (no sampling, no collectives): `feature_kind` picks the
extractor, `check_eval_spec` refuses combinations that cannot work, and
`build_stopping_rule` and `build_divergence_guard` turn `eval.stop` into evals rules.
"""

from __future__ import annotations

import math

import torch

from evals.features import build_feature_extractor
from evals.metrics import FEATURE_METRICS
from evals.stopping import AnyOf, DivergenceGuard, Patience, StoppingRule, TwoSampleTestStop
from zerosum.catalog import MIXTURES, dataset_info
from zerosum.config import JobSpec, StopSpec
from zerosum.errors import ConfigError
from zerosum.evaluation.channels import ChannelClassifierExtractor
from zerosum.files import cache_dir

# Metrics that need a feature extractor (classes and accuracy need the classifier's probabilities).
EXTRACTOR_METRICS = set(FEATURE_METRICS) | {"classes", "accuracy"}


def feature_kind(spec: JobSpec) -> str:
    """'auto' -> identity for 2-D points, classifier for labelled images, inception otherwise."""
    if spec.eval.features != "auto":
        return spec.eval.features
    info = dataset_info(spec.data.name)
    if info.kind == "points":
        return "identity"
    return "classifier" if info.labelled else "inception"


def check_eval_spec(spec: JobSpec) -> None:
    """Combinations that cannot work, as ConfigErrors naming the field."""
    metrics, kind = set(spec.eval.metrics), feature_kind(spec)
    if "modes" in metrics and not dataset_info(spec.data.name).mixture:
        known = f"{', '.join(MIXTURES[:-1])} or {MIXTURES[-1]}"
        raise ConfigError(f"eval.metrics: 'modes' needs a known mixture (data.name {known}); "
                          "use 'classes' for labelled images")
    for needs_classifier in sorted(metrics & {"classes", "accuracy"}):
        if kind != "classifier":
            raise ConfigError(f"eval.metrics: '{needs_classifier}' needs eval.features: classifier (got {kind})")
    if kind == "classifier" and metrics & EXTRACTOR_METRICS and spec.eval.featurizer_path is None:
        raise ConfigError("eval.featurizer_path: classifier features need trained weights; run "
                          f"`zerosum featurizer train --dataset {spec.data.name}` or let `zerosum run` do it")


def build_stopping_rule(stop: StopSpec) -> StoppingRule | None:
    """The spec's quality rules (two-sample test, patience) combined with any-of; None when
    none is asked for. The divergence guard is apart (`build_divergence_guard`): it reads
    training metrics only, before any sampling, and its verdict may be healed by a rollback."""
    rules: list[StoppingRule] = []
    if stop.two_sample_alpha is not None:
        rules.append(TwoSampleTestStop(alpha=stop.two_sample_alpha))
    if stop.patience is not None:
        rules.append(Patience(stop.patience_metric, stop.patience, stop.min_delta, stop.patience_mode))
    return AnyOf(*rules) if rules else None


def build_divergence_guard(stop: StopSpec) -> DivergenceGuard | None:
    return DivergenceGuard() if stop.divergence_guard else None


def build_extractor(spec: JobSpec, sample_shape: tuple[int, ...], device: torch.device):
    """The evals feature extractor that `feature_kind` names, on `device` (for a dataset of
    another's channels, stacked-mnist, that dataset's classifier on each channel); Inception
    weights are looked up (or converted) in zerosum's cache folder."""
    kind = feature_kind(spec)
    if kind == "identity":
        return build_feature_extractor("identity", dim=math.prod(sample_shape))
    if kind == "classifier" and dataset_info(spec.data.name).channels_of is not None:
        # Stacked MNIST: the MNIST classifier reads each channel; 1000 joint classes.
        return ChannelClassifierExtractor(spec.eval.featurizer_path, channels=sample_shape[0], device=device)
    if kind == "classifier":
        return build_feature_extractor("classifier", weights_path=spec.eval.featurizer_path, device=device)
    return build_feature_extractor("inception", weights_path=spec.eval.inception_weights, device=device,
                                   cache=cache_dir())
