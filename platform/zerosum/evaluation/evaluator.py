"""In-training evaluation: sample, extract features per rank, merge, score once, maybe stop.

At an eval round every rank draws its share of `eval.num_samples` fakes (from EMA-G
when the run keeps one) and extracts features. The `FeatureStats` are all-reduced
and the features all-gathered; rank 0 computes the metrics once with `evals`,
feeds the stopping rule and broadcasts (metrics, verdict) so that every rank
leaves the loop at the same round. The real side is computed once per run and
cached on disk, keyed by dataset, split, extractor and sample count.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from evals.metrics import FEATURE_METRICS, class_metrics, feature_metrics, mixture_metrics
from evals.stats import FeatureStats
from zerosum.catalog import is_image_data
from zerosum.config import JobSpec
from zerosum.data import Dataset
from zerosum.evaluation.collectives import broadcast_from_rank0, gather_rows, merge_stats
from zerosum.evaluation.plan import (
    EXTRACTOR_METRICS,
    build_divergence_guard,
    build_extractor,
    build_stopping_rule,
    check_eval_spec,
)
from zerosum.evaluation.reference import RealReference, extract, real_reference
from zerosum.pictures import samples_to_image
from zerosum.train.steps import unwrap

log = logging.getLogger(__name__)


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
            fake_stats=stats, num_permutations=spec.eval.mmd_permutations, kid_subsets=spec.eval.kid_subsets,
            kid_subset_size=spec.eval.kid_subset_size, seed=spec.schedule.seed + round_index,
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
             batch_size: int = 500) -> torch.Tensor:
    """n samples (CPU float32) from G in eval mode (conditional G: uniform labels)."""
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        y = noise.labels(size, rng, device)
        outputs.append(model(noise.sample(size, rng, device), y).float().cpu())
    model.train(was_training)
    return torch.cat(outputs)


@dataclass(frozen=True)
class Verdict:
    """What an evaluation decided, the same on every rank.

    reason: why the run should stop now, or None to go on.
    diverged: the divergence guard fired (no metrics were computed); a rollback may heal it.
    """

    reason: str | None = None
    diverged: bool = False


GO_ON = Verdict()


class Evaluator:
    """Runs at eval rounds on every rank; rank 0 scores, logs and decides."""

    def __init__(self, spec: JobSpec, dataset: Dataset, rank: int, world_size: int,
                 device: torch.device, logger=None):
        self.spec, self.dataset = spec, dataset
        self.rank, self.world_size, self.device = rank, world_size, device
        self.logger = logger
        self.is_image = is_image_data(spec.data.name)
        self.rule = build_stopping_rule(spec.eval.stop)
        self.guard = build_divergence_guard(spec.eval.stop)
        self.extractor = self.reference = None
        self.warned: set[tuple[type, str]] = set()
        if set(spec.eval.metrics) & EXTRACTOR_METRICS:
            check_eval_spec(spec)
            self.extractor = build_extractor(spec, dataset.sample_shape, device)
            # Only rank 0 scores: the other ranks need the extractor, not the real side.
            self.reference = real_reference(spec, self.extractor) if rank == 0 else None

    def due(self, round_index: int) -> bool:
        every = self.spec.eval.every_rounds
        return round_index == self.spec.schedule.total_rounds or bool(every and round_index % every == 0)

    def evaluate(self, state, round_index: int, train_metrics: dict[str, float]) -> tuple[dict[str, float], Verdict]:
        """(eval metrics, verdict), identical on every rank.

        The divergence guard reads the training metrics first: a diverged G's samples
        (NaN, say) are neither scored nor logged, and every rank skips the sampling."""
        verdict = self.check_divergence(train_metrics)
        if verdict.diverged:
            return {}, verdict
        if self.logger is not None:
            self.log_grid(state, round_index)
        fakes, features, stats, probs = self.sample_and_merge(state, round_index)
        result: tuple[dict[str, float], Verdict] = ({}, GO_ON)
        if self.rank == 0:
            with self.warnings_once_per_run():
                metrics = score(self.spec, fakes, features, stats, probs, self.reference, round_index)
            decision = self.rule.update({**train_metrics, **metrics}) if self.rule else None
            result = (metrics, Verdict(decision.reason) if decision and decision.stop else GO_ON)
            if self.logger is not None:
                self.logger.log_metrics(metrics, round_index)
        return broadcast_from_rank0(result, self.world_size)

    def check_divergence(self, train_metrics: dict[str, float]) -> Verdict:
        """Rank 0's guard decision on the interval's training metrics, sent to every rank."""
        verdict = GO_ON
        if self.rank == 0 and self.guard is not None:
            decision = self.guard.update(train_metrics)
            verdict = Verdict(decision.reason, diverged=True) if decision.stop else GO_ON
        return broadcast_from_rank0(verdict, self.world_size) if self.guard is not None else verdict

    def reset_guard(self) -> None:
        """Forget the guard's saturation streak (after a rollback, training starts anew)."""
        self.guard = build_divergence_guard(self.spec.eval.stop)

    def log_stop(self, reason: str, round_index: int) -> None:
        log.warning("stopping at round %d: %s", round_index, reason)
        if self.logger is not None:
            self.logger.set_tags({"zerosum.stop_reason": reason, "zerosum.stopped_at_round": str(round_index)})

    @contextlib.contextmanager
    def warnings_once_per_run(self) -> Iterator[None]:
        """Say each distinct warning of scoring once per run, not at every eval.

        Python's own once-per-location filter does not hold here: every
        `warnings.catch_warnings` block anywhere resets it, so a warning such as a
        rank-deficient covariance would repeat at every evaluation."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for warning in caught:
            key = (warning.category, str(warning.message))
            if key not in self.warned:
                self.warned.add(key)
                message = f"{warning.category.__name__}: {warning.message}"
                log.warning("%s (said once per run)", message)
                if self.logger is not None:
                    self.logger.warn(message)

    def sample_and_merge(self, state, round_index: int):
        """This rank's share of fakes and features, gathered and merged across ranks."""
        share = -(-self.spec.eval.num_samples // self.world_size)
        rng = torch.Generator().manual_seed(self.spec.schedule.seed * 100_003 + round_index * 101 + self.rank)
        fakes = generate(sampling_model(state), state.noise, share, rng, self.device)
        features = probs = stats = None
        if self.extractor is not None:
            features, probs = extract(self.extractor, fakes, self.spec.data.scale, self.is_image)
            stats = merge_stats(FeatureStats.from_features(features), self.world_size)
        # Gathering points for mode coverage is cheap; images are only needed as features.
        gathered_fakes = gather_rows(fakes, self.world_size) if not self.is_image else fakes
        return gathered_fakes, gather_rows(features, self.world_size), stats, gather_rows(probs, self.world_size)

    def log_grid(self, state, round_index: int) -> None:
        grid_rng = torch.Generator().manual_seed(self.spec.schedule.seed)
        samples = generate(sampling_model(state), state.noise, self.spec.eval.grid_size, grid_rng, self.device)
        reference = None if self.is_image else self.dataset.samples[:1000]
        self.logger.log_samples(samples_to_image(samples, self.spec.data.scale, reference), round_index)

    def state_dict(self) -> dict[str, Any]:
        state = {"extra/stopping": self.rule.state_dict()} if self.rule else {}
        return state | ({"extra/guard": self.guard.state_dict()} if self.guard else {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.rule and "extra/stopping" in state:
            try:
                self.rule.load_state_dict(state["extra/stopping"])
            except ValueError:
                # Checkpoints before the guard stood apart kept it inside the any-of list.
                log.warning("the checkpoint's stopping-rule state has another layout; the rules start afresh")
        if self.guard and "extra/guard" in state:
            self.guard.load_state_dict(state["extra/guard"])
