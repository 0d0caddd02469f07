"""Scoring outside training (`zerosum eval`): a generator or an image folder against reals.

The real side is a job spec (its dataset's held-out split) or an image folder; the
fake side is an MLflow model URI or an image folder. Scoring reuses the in-training
pieces (plan, reference, evaluator.score), so the numbers mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from evals.stats import FeatureStats
from zerosum.catalog import EVAL_NUM_SAMPLES, KID_SUBSET_SIZE, KID_SUBSETS, MMD_PERMUTATIONS, is_image_data
from zerosum.config import JobSpec, load_job, validate_job
from zerosum.data import load_dataset
from zerosum.errors import DataError
from zerosum.evaluation.evaluator import score
from zerosum.evaluation.featurizer import prepare_eval_spec
from zerosum.evaluation.plan import build_extractor
from zerosum.evaluation.reference import extract, real_reference

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


@dataclass
class EvalRequest:
    """What `zerosum eval` was asked: both sides and the eval section's choices."""

    real: Path
    fake: str
    metrics: list[str]
    num_samples: int = EVAL_NUM_SAMPLES
    features: str = "auto"
    permutations: int = MMD_PERMUTATIONS
    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = KID_SUBSET_SIZE
    featurizer: Path | None = None
    overrides: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "cpu"


def folder_spec(folder: Path) -> dict:
    """A data section for an image folder, sized from its first image."""
    from PIL import Image

    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"{folder}: no .png/.jpg images found")
    with Image.open(images[0]) as first:
        channels = 1 if first.mode in ("L", "1", "I;16") else 3
        return {"name": "folder", "root": str(folder), "image_size": first.size[0], "channels": channels,
                "scale": "unit"}


def evaluation_spec(request: EvalRequest) -> JobSpec:
    """The real side as a JobSpec whose eval section holds the request's choices."""
    if request.real.is_dir():
        raw = {"name": "eval", "data": folder_spec(request.real), "schedule": {"max_rounds": 1}}
        spec = validate_job(raw, source=str(request.real))
    else:
        spec = load_job(request.real, request.overrides)
    evals = {"metrics": request.metrics, "num_samples": request.num_samples, "features": request.features,
             "mmd_permutations": request.permutations, "kid_subsets": request.kid_subsets,
             "kid_subset_size": request.kid_subset_size}
    if request.featurizer:
        evals["featurizer_path"] = request.featurizer.resolve()
    spec = spec.model_copy(update={"eval": spec.eval.model_copy(update=evals)})
    return prepare_eval_spec(spec)


def load_fakes(request: EvalRequest, spec: JobSpec) -> tuple[torch.Tensor, str]:
    """(fakes, their scale): from an image folder sized like the reals, or a logged generator."""
    if Path(request.fake).is_dir():
        data = spec.data.model_copy(update={"name": "folder", "root": Path(request.fake).resolve(), "scale": "unit",
                                            "image_size": spec.data.image_size or 28})
        return load_dataset(data).samples[: request.num_samples], "unit"
    from zerosum.serving import class_labels, draw_noise, load_generator

    model, metadata = load_generator(request.fake)  # a bad URI is one ZerosumError naming it
    z = draw_noise(metadata, request.num_samples, request.seed)
    y = class_labels(metadata, request.num_samples, None, request.seed)
    with torch.no_grad():
        return (model(z) if y is None else model(z, y)), "unit"


def evaluate(request: EvalRequest) -> dict[str, float]:
    """The requested metrics of the fakes against the reals, keyed `eval/*`."""
    spec = evaluation_spec(request)
    fakes, scale = load_fakes(request, spec)
    if not set(spec.eval.metrics) - {"modes"}:
        return score(spec, fakes, None, None, None, None, round_index=0)
    sample_shape = tuple(load_dataset(spec.data, "test").sample_shape)
    extractor = build_extractor(spec, sample_shape, torch.device(request.device))
    reference = real_reference(spec, extractor)
    features, probs = extract(extractor, fakes, scale, is_image_data(spec.data.name))
    return score(spec, fakes, features, FeatureStats.from_features(features), probs, reference, round_index=0)
