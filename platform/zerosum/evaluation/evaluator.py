"""In-training evaluation: sample, extract features per rank, merge, score once, maybe stop.

At an eval round every rank draws its share of `eval.num_samples` fakes (from EMA-G
when the run keeps one), or translates its share of held-out inputs (a translating
method; evaluation/translation.py), and extracts features. The `FeatureStats` are all-reduced
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
from evals.translation import translation_metrics
from zerosum.catalog import TRANSLATION_METHODS, TRANSLATION_METRICS, is_image_data
from zerosum.config import JobSpec
from zerosum.data import Dataset, to_unit_images
from zerosum.evaluation.collectives import broadcast_from_rank0, gather_rows, merge_stats
from zerosum.evaluation.plan import (
    EXTRACTOR_METRICS,
    build_divergence_guard,
    build_extractor,
    build_stopping_rule,
    check_eval_spec,
)
from zerosum.evaluation.reference import RealReference, extract, real_reference
from zerosum.evaluation.translation import held_out_share, per_image_scores, translate
from zerosum.pictures import image_grid, samples_to_image, titled_row
from zerosum.train.steps import eval_mode

log = logging.getLogger(__name__)


@dataclass
class Merged:
    """One evaluation's outputs, merged over ranks for rank 0 to score.

    fakes: (N, *sample_shape) in the data's scale (gathered for points; images stay per rank,
    only their features are needed); features float64 (N, D) or None; stats merged;
    probs float64 (N, K) or None; per_image: a translator's per-image scores, (N, 1) each."""

    fakes: torch.Tensor
    features: torch.Tensor | None
    stats: FeatureStats | None
    probs: torch.Tensor | None
    per_image: dict[str, torch.Tensor]


def score(spec: JobSpec, merged: Merged, reference: RealReference | None, round_index: int) -> dict[str, float]:
    """The metrics named in eval.metrics, computed once from the merged outputs."""
    wanted = set(spec.eval.metrics)
    metrics: dict[str, float] = {}
    if wanted & set(FEATURE_METRICS):
        metrics |= feature_metrics(
            merged.features, None if reference is None else reference.features,
            metrics=sorted(wanted & set(FEATURE_METRICS)), reference=None if reference is None else reference.fid,
            fake_stats=merged.stats, num_permutations=spec.eval.mmd_permutations, kid_subsets=spec.eval.kid_subsets,
            kid_subset_size=spec.eval.kid_subset_size, seed=spec.schedule.seed + round_index,
        )
    if "modes" in wanted:
        metrics |= mixture_metrics(merged.fakes.reshape(len(merged.fakes), -1), spec.data.name)
    if "classes" in wanted:
        metrics |= class_metrics(merged.probs)
    metrics |= translation_metrics(**merged.per_image)
    return {key: float(value) for key, value in metrics.items()}


def baseline_keys(metrics: dict[str, float]) -> dict[str, float]:
    """eval/fid -> baseline/fid: the task's baseline, scored as a translator's outputs are."""
    return {f"baseline/{key.removeprefix('eval/')}": value for key, value in metrics.items()}


def sampling_model(state) -> nn.Module:
    """What the run samples: its method's sampler (EMA-G when kept; T(G(z)) for staged)."""
    return state.method.sampler(state.players, state.ema)


@torch.no_grad()
def generate(model: nn.Module, noise, n: int, rng: torch.Generator, device: torch.device,
             batch_size: int = 500) -> torch.Tensor:
    """n samples (CPU float32) from G in eval mode (conditional G: uniform labels)."""
    outputs = []
    with eval_mode(model):
        for start in range(0, n, batch_size):
            size = min(batch_size, n - start)
            y = noise.labels(size, rng, device)
            outputs.append(model(noise.sample(size, rng, device), y).float().cpu())
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
        # A translator is judged on held-out inputs; its task's baseline once per run.
        translates = spec.method in TRANSLATION_METHODS
        self.held_out = held_out_share(spec, rank, world_size) if translates else None
        self.baseline_scored = not translates

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
        merged = self.sample_and_merge(state, round_index)
        baseline = None if self.baseline_scored else self.merge(self.held_out.baseline)
        self.baseline_scored = True
        result: tuple[dict[str, float], Verdict] = ({}, GO_ON)
        if self.rank == 0:
            with self.warnings_once_per_run():
                metrics = score(self.spec, merged, self.reference, round_index)
                if baseline is not None and self.logger is not None:
                    self.logger.log_metrics(baseline_keys(score(self.spec, baseline, self.reference, round_index)),
                                            round_index, always=True)
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

    def sample_and_merge(self, state, round_index: int) -> Merged:
        """This rank's share of fakes (or of translated held-out inputs), merged across ranks."""
        model = sampling_model(state)
        if self.held_out is not None:
            return self.merge(translate(model, self.held_out.inputs, self.device))
        share = -(-self.spec.eval.num_samples // self.world_size)
        rng = torch.Generator().manual_seed(self.spec.schedule.seed * 100_003 + round_index * 101 + self.rank)
        return self.merge(generate(model, state.noise, share, rng, self.device))

    def merge(self, fakes: torch.Tensor) -> Merged:
        """Features, statistics and per-image scores of this rank's outputs, gathered."""
        features = probs = stats = None
        if self.extractor is not None:
            features, probs = extract(self.extractor, fakes, self.spec.data.scale, self.is_image)
            stats = merge_stats(FeatureStats.from_features(features), self.world_size)
        per_image = {}
        if self.held_out is not None:
            wanted = set(self.spec.eval.metrics) & set(TRANSLATION_METRICS)
            per_image = per_image_scores(fakes, self.held_out, probs, self.spec.data.scale, wanted)
        # Gathering points for mode coverage is cheap; images are only needed as features.
        gathered_fakes = gather_rows(fakes, self.world_size) if not self.is_image else fakes
        return Merged(gathered_fakes, gather_rows(features, self.world_size), stats,
                      gather_rows(probs, self.world_size),
                      {key: gather_rows(rows, self.world_size) for key, rows in per_image.items()})

    def log_grid(self, state, round_index: int) -> None:
        if self.held_out is not None:
            self.logger.log_samples(self.translation_grid(state), round_index)
            return
        grid_rng = torch.Generator().manual_seed(self.spec.schedule.seed)
        samples = generate(sampling_model(state), state.noise, self.spec.eval.grid_size, grid_rng, self.device)
        reference = None if self.is_image else self.dataset.samples[:1000]
        self.logger.log_samples(samples_to_image(samples, self.spec.data.scale, reference), round_index)

    def translation_grid(self, state):
        """The same held-out inputs every eval: input | output | target (paired tasks) or
        input | output | the way back (CycleGAN's F(G(x))), one grid each, side by side."""
        model, held_out = sampling_model(state), self.held_out
        inputs = held_out.inputs[:self.spec.eval.grid_size]
        outputs = translate(model, inputs, self.device)
        if held_out.targets is not None:
            third, title = held_out.targets[:len(inputs)], "target"
        else:
            third, title = translate(state.method.inverse_translator(state.players), outputs, self.device), "back"
        with torch.no_grad():
            shown_inputs = model.condition(inputs.to(self.device)).cpu()
        panels = [image_grid(to_unit_images(images, self.spec.data.scale)) for images in (shown_inputs, outputs, third)]
        return titled_row(panels, ("input", "output", title))

    def state_dict(self) -> dict[str, Any]:
        state = {"extra/stopping": self.rule.state_dict()} if self.rule else {}
        state |= {"extra/baseline_scored": True} if self.held_out is not None and self.baseline_scored else {}
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
        # A resumed translator's baseline was scored (and logged) before the checkpoint.
        self.baseline_scored = self.baseline_scored or bool(state.get("extra/baseline_scored"))
