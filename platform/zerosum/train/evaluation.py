"""In-training evaluation: sample, extract features per rank, merge, score once, maybe stop.

At an eval round every rank draws its share of `eval.num_samples` fakes (from EMA-G
when the run keeps one) and extracts features. The `FeatureStats` are all-reduced
and the features all-gathered; rank 0 computes the metrics once with `evals`,
feeds the stopping rule and broadcasts (metrics, stop reason) so that every rank
leaves the loop at the same round. The real side is computed once per run and
cached on disk, keyed by dataset, split, extractor and sample count.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from evals.features import build_feature_extractor
from evals.fid import FIDReference
from evals.inception import cache_dir
from evals.metrics import FEATURE_METRICS, class_metrics, feature_metrics, mixture_metrics
from evals.stats import FeatureStats
from evals.stopping import AnyOf, DivergenceGuard, Patience, StoppingRule, TwoSampleTestStop
from zerosum.config import JobSpec, StopSpec
from zerosum.data import Dataset, load_dataset, to_unit_images
from zerosum.errors import ConfigError
from zerosum.samples import samples_to_image
from zerosum.train.steps import unwrap

log = logging.getLogger(__name__)

# Metrics that need a feature extractor (classes needs the classifier's probabilities).
EXTRACTOR_METRICS = set(FEATURE_METRICS) | {"classes"}
LABELLED_IMAGES = {"mnist", "fashion-mnist", "digits"}


# --------------------------------------------------------------------------- choices


def feature_kind(spec: JobSpec) -> str:
    """'auto' -> identity for 2-D points, classifier for labelled images, inception otherwise."""
    if spec.eval.features != "auto":
        return spec.eval.features
    if spec.data.name in ("ring8", "grid25"):
        return "identity"
    return "classifier" if spec.data.name in LABELLED_IMAGES else "inception"


def check_eval_spec(spec: JobSpec) -> None:
    """Combinations that cannot work, as ConfigErrors naming the field."""
    metrics, kind = set(spec.eval.metrics), feature_kind(spec)
    if "modes" in metrics and spec.data.name not in ("ring8", "grid25"):
        raise ConfigError("eval.metrics: 'modes' needs a known mixture (data.name ring8 or grid25); "
                          "use 'classes' for labelled images")
    if "classes" in metrics and kind != "classifier":
        raise ConfigError(f"eval.metrics: 'classes' needs eval.features: classifier (got {kind})")
    if kind == "classifier" and metrics & EXTRACTOR_METRICS and spec.eval.featurizer_path is None:
        raise ConfigError("eval.featurizer_path: classifier features need trained weights; run "
                          f"`zerosum featurizer train --dataset {spec.data.name}` or let `zerosum run` do it")


def build_stopping_rule(stop: StopSpec) -> StoppingRule | None:
    """The spec's rules combined with any-of; None when no rule is asked for."""
    rules: list[StoppingRule] = []
    if stop.divergence_guard:
        rules.append(DivergenceGuard())
    if stop.two_sample_alpha is not None:
        rules.append(TwoSampleTestStop(alpha=stop.two_sample_alpha))
    if stop.patience is not None:
        rules.append(Patience(stop.patience_metric, stop.patience, stop.min_delta, stop.patience_mode))
    return AnyOf(*rules) if rules else None


def build_extractor(spec: JobSpec, sample_shape: tuple[int, ...], device: torch.device):
    kind = feature_kind(spec)
    if kind == "identity":
        return build_feature_extractor("identity", dim=math.prod(sample_shape))
    if kind == "classifier":
        return build_feature_extractor("classifier", weights_path=spec.eval.featurizer_path, device=device)
    return build_feature_extractor("inception", weights_path=spec.eval.inception_weights, device=device)


# --------------------------------------------------------------------------- the real side


@dataclass
class RealReference:
    """features float64 (N, D); probs float64 (N, K) or None; FID reference with cached sqrt."""

    features: torch.Tensor
    probs: torch.Tensor | None
    fid: FIDReference


def extract(extractor, samples: torch.Tensor, scale: str, is_image: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(features float64 (N, D), probs float64 (N, K) or None) of samples in the data's scale."""
    inputs = to_unit_images(samples, scale) if is_image else samples
    if hasattr(extractor, "features_and_probs"):
        return extractor.features_and_probs(inputs)
    return extractor(inputs), None


def reference_cache_path(spec: JobSpec, extractor, split: str, count: int) -> Path:
    weights = getattr(extractor, "weights_path", None) or spec.eval.featurizer_path or ""
    tag = hashlib.sha1(f"{weights}:{spec.data.root}:{spec.data.limit}".encode()).hexdigest()[:10]
    name = getattr(extractor, "name", "features")
    return cache_dir() / "real-features" / f"{spec.data.name}-{split}-{name}-{tag}-n{count}.npz"


def real_reference(spec: JobSpec, extractor, is_image: bool) -> RealReference:
    """Features of `eval.num_samples` held-out reals, from the disk cache when present."""
    test = load_dataset(spec.data, "test", seed=spec.schedule.seed)
    count = min(spec.eval.num_samples, len(test))
    path = reference_cache_path(spec, extractor, "test", count)
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            features = torch.from_numpy(cached["features"])
            probs = torch.from_numpy(cached["probs"]) if "probs" in cached else None
    else:
        features, probs = extract(extractor, test.samples[:count], spec.data.scale, is_image)
        save_reference(path, features, probs)
    return RealReference(features, probs, FIDReference.from_stats(FeatureStats.from_features(features)))


def save_reference(path: Path, features: torch.Tensor, probs: torch.Tensor | None) -> None:
    """Atomic npz write: concurrent ranks may race to fill the same cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{torch.randint(1 << 30, ()).item()}.tmp.npz")
    arrays = {"features": features.numpy()} | ({"probs": probs.numpy()} if probs is not None else {})
    np.savez(tmp, **arrays)
    tmp.replace(path)


# --------------------------------------------------------------------------- collectives


def distributed(world_size: int) -> bool:
    return world_size > 1 and dist.is_available() and dist.is_initialized()


def gather_rows(rows: torch.Tensor | None, world_size: int) -> torch.Tensor | None:
    """Concatenate every rank's (n, D) rows (n equal on all ranks) in rank order."""
    if rows is None or not distributed(world_size):
        return rows
    parts = [torch.empty_like(rows) for _ in range(world_size)]
    dist.all_gather(parts, rows.contiguous())
    return torch.cat(parts)


def merge_stats(stats: FeatureStats, world_size: int) -> FeatureStats:
    """All-reduce count, sum and outer sums: the statistics of every rank's features."""
    if not distributed(world_size):
        return stats
    flat = stats.to_tensor()
    dist.all_reduce(flat)
    return FeatureStats.from_tensor(flat, stats.dim)


def broadcast_from_rank0(value: Any, world_size: int) -> Any:
    if not distributed(world_size):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


# --------------------------------------------------------------------------- scoring


def score(spec: JobSpec, fakes: torch.Tensor, features: torch.Tensor | None, stats: FeatureStats | None,
          probs: torch.Tensor | None, reference: RealReference | None, round_index: int) -> dict[str, float]:
    """The metrics named in eval.metrics, computed once from the merged fakes.

    fakes: (N, *sample_shape) in the data's scale; features float64 (N, D) or None.
    """
    wanted = set(spec.eval.metrics)
    metrics: dict[str, float] = {}
    if wanted & set(FEATURE_METRICS):
        metrics |= feature_metrics(
            features, None if reference is None else reference.features,
            metrics=sorted(wanted & set(FEATURE_METRICS)), reference=None if reference is None else reference.fid,
            fake_stats=stats, num_permutations=spec.eval.mmd_permutations, seed=spec.schedule.seed + round_index,
        )
    if "modes" in wanted:
        metrics |= mixture_metrics(fakes.reshape(len(fakes), -1), spec.data.name)
    if "classes" in wanted:
        metrics |= class_metrics(probs)
    return {key: float(value) for key, value in metrics.items()}


def sampling_model(state) -> nn.Module:
    """EMA-G when the run keeps one, else G's module."""
    return state.ema if state.ema is not None else unwrap(state.generator)


@torch.no_grad()
def generate(model: nn.Module, noise, n: int, rng: torch.Generator, device: torch.device,
             batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n samples (CPU float32) from G in eval mode, with their labels for conditional G."""
    was_training = model.training
    model.eval()
    outputs, labels = [], []
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        y = noise.labels(size, rng, device)
        outputs.append(model(noise.sample(size, rng, device), y).float().cpu())
        if y is not None:
            labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(outputs), (torch.cat(labels) if labels else None)


class Evaluator:
    """Runs at eval rounds on every rank; rank 0 scores, logs and decides."""

    def __init__(self, spec: JobSpec, dataset: Dataset, rank: int, world_size: int,
                 device: torch.device, logger=None):
        self.spec, self.dataset = spec, dataset
        self.rank, self.world_size, self.device = rank, world_size, device
        self.logger = logger
        self.is_image = len(dataset.sample_shape) == 3
        self.rule = build_stopping_rule(spec.eval.stop)
        self.extractor = self.reference = None
        if set(spec.eval.metrics) & EXTRACTOR_METRICS:
            check_eval_spec(spec)
            self.extractor = build_extractor(spec, dataset.sample_shape, device)
            self.reference = real_reference(spec, self.extractor, self.is_image)

    def due(self, round_index: int) -> bool:
        every = self.spec.eval.every_rounds
        return round_index == self.spec.schedule.total_rounds or bool(every and round_index % every == 0)

    def evaluate(self, state, round_index: int, train_metrics: dict[str, float]) -> tuple[dict[str, float], str | None]:
        """(eval metrics, stop reason or None), identical on every rank."""
        if self.logger is not None:
            self.log_grid(state, round_index)
        fakes, features, stats, probs = self.sample_and_merge(state, round_index)
        result: tuple[dict[str, float], str | None] = ({}, None)
        if self.rank == 0:
            metrics = score(self.spec, fakes, features, stats, probs, self.reference, round_index)
            decision = self.rule.update({**train_metrics, **metrics}) if self.rule else None
            result = (metrics, decision.reason if decision and decision.stop else None)
            self.log_result(*result, round_index)
        return broadcast_from_rank0(result, self.world_size)

    def sample_and_merge(self, state, round_index: int):
        """This rank's share of fakes and features, gathered and merged across ranks."""
        share = -(-self.spec.eval.num_samples // self.world_size)
        rng = torch.Generator().manual_seed(self.spec.schedule.seed * 100_003 + round_index * 101 + self.rank)
        fakes, _ = generate(sampling_model(state), state.noise, share, rng, self.device)
        features = probs = stats = None
        if self.extractor is not None:
            features, probs = extract(self.extractor, fakes, self.spec.data.scale, self.is_image)
            stats = merge_stats(FeatureStats.from_features(features), self.world_size)
        # Gathering points for mode coverage is cheap; images are only needed as features.
        gathered_fakes = gather_rows(fakes, self.world_size) if not self.is_image else fakes
        return gathered_fakes, gather_rows(features, self.world_size), stats, gather_rows(probs, self.world_size)

    def log_result(self, metrics: dict[str, float], reason: str | None, round_index: int) -> None:
        if self.logger is None:
            return
        self.logger.log_metrics(metrics, round_index)
        if reason:
            log.warning("stopping at round %d: %s", round_index, reason)
            self.logger.set_tags({"zerosum.stop_reason": reason, "zerosum.stopped_at_round": str(round_index)})

    def log_grid(self, state, round_index: int) -> None:
        grid_rng = torch.Generator().manual_seed(self.spec.schedule.seed)
        samples, _ = generate(sampling_model(state), state.noise, self.spec.eval.grid_size, grid_rng, self.device)
        reference = None if self.is_image else self.dataset.samples[:1000]
        self.logger.log_samples(samples_to_image(samples, self.spec.data.scale, reference), round_index)

    def state_dict(self) -> dict[str, Any]:
        return {"extra/stopping": self.rule.state_dict()} if self.rule else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.rule and "extra/stopping" in state:
            self.rule.load_state_dict(state["extra/stopping"])
