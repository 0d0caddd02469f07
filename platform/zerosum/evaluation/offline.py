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
from zerosum.catalog import (
    DATASETS,
    EVAL_NUM_SAMPLES,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    MIXTURES,
    MMD_PERMUTATIONS,
    is_image_data,
)
from zerosum.config import JobSpec, load_job, validate_job
from zerosum.data import describe_dataset, folder_images, images_only, load_dataset
from zerosum.errors import ConfigError
from zerosum.evaluation.evaluator import Merged, score
from zerosum.evaluation.featurizer import prepare_eval_spec
from zerosum.evaluation.plan import EXTRACTOR_METRICS, build_extractor, feature_kind
from zerosum.evaluation.reference import cached_extract, extract, real_reference

# Labelled image datasets: the ones `zerosum featurizer train` makes a classifier for.
CLASSIFIER_DATASETS = tuple(sorted(n for n, info in DATASETS.items() if info.kind == "images" and info.labelled))
CLASSIFIER_DATASETS_TEXT = ", ".join(CLASSIFIER_DATASETS[:-1]) + f" or {CLASSIFIER_DATASETS[-1]}"


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
    """A data section for an image folder (`--real`), sized from its images."""
    from PIL import Image

    images = folder_images(folder, "--real")
    with Image.open(images[0]) as first:
        channels = 1 if first.mode in ("L", "1", "I;16") else 3
        return {"name": "folder", "root": str(folder), "image_size": first.size[0], "channels": channels,
                "scale": "unit"}


def real_side(request: EvalRequest, spec: JobSpec) -> str:
    """What `--real` holds, for messages: `--real X is an image folder`."""
    if request.real.is_dir():
        return f"--real {request.real} is an image folder"
    info = DATASETS[spec.data.name]
    return f"--real {request.real} holds {info.name} ({info.kind}{'' if info.labelled else ', unlabelled'})"


def check_request(request: EvalRequest, spec: JobSpec) -> None:
    """The metrics and features asked for against the real data, as ConfigErrors in the
    command's terms (--metrics, --features, --featurizer). `plan.check_eval_spec` says the
    same in eval.* terms, and only after `prepare_eval_spec` tried to train a featurizer,
    which a folder or a mixture has none of."""
    metrics, kind, name = set(spec.eval.metrics), feature_kind(spec), spec.data.name
    if "modes" in metrics and name not in MIXTURES:
        raise ConfigError(f"--metrics modes: counts the modes of a known mixture ({', '.join(MIXTURES)}); "
                          f"{real_side(request, spec)}; use classes for labelled images")
    classifier_known = name in CLASSIFIER_DATASETS or request.featurizer is not None
    if "classes" in metrics and not classifier_known:
        raise ConfigError(f"--metrics classes: needs labelled images, a job spec of {CLASSIFIER_DATASETS_TEXT} (or --features "
                          f"classifier --featurizer WEIGHTS); {real_side(request, spec)}"
                          + (", without class labels" if request.real.is_dir() else ""))
    if "classes" in metrics and kind != "classifier":
        raise ConfigError(f"--metrics classes: needs --features classifier (or auto), got --features {kind}")
    if kind == "classifier" and metrics & EXTRACTOR_METRICS and not classifier_known:
        raise ConfigError(f"--features classifier: zerosum trains a classifier for {CLASSIFIER_DATASETS_TEXT} only; "
                          f"{real_side(request, spec)}; pass --featurizer WEIGHTS or use --features inception")


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
    # The real side is the images themselves, whatever task a job derives from them.
    spec = spec.model_copy(update={"data": images_only(spec.data), "eval": spec.eval.model_copy(update=evals)})
    check_request(request, spec)
    return prepare_eval_spec(spec)


def load_fakes(request: EvalRequest, spec: JobSpec) -> tuple[torch.Tensor, str]:
    """(fakes, their scale): from an image folder sized like the reals, or a logged generator."""
    if Path(request.fake).is_dir():
        folder_images(Path(request.fake), "--fake")
        data = spec.data.model_copy(update={"name": "folder", "root": Path(request.fake).resolve(), "scale": "unit",
                                            "image_size": spec.data.image_size or 28})
        return load_dataset(data).samples[: request.num_samples], "unit"
    from zerosum.serving import check_samples_from_z, class_labels, draw_noise, load_generator

    model, metadata = load_generator(request.fake)  # a bad URI is one ZerosumError naming it
    check_samples_from_z(request.fake, metadata)
    z = draw_noise(metadata, request.num_samples, request.seed)
    y = class_labels(metadata, request.num_samples, None, request.seed)
    with torch.no_grad():
        return (model(z) if y is None else model(z, y)), "unit"


def evaluate(request: EvalRequest) -> dict[str, float]:
    """The requested metrics of the fakes against the reals, keyed `eval/*`."""
    spec = evaluation_spec(request)
    fakes, scale = load_fakes(request, spec)
    return score_samples(spec, fakes, scale, request.device)


def score_samples(spec: JobSpec, fakes: torch.Tensor, scale: str, device: str = "cpu",
                  cache_features: bool = False) -> dict[str, float]:
    """spec.eval's metrics of `fakes` (N, *sample_shape), in `scale`, against spec's held-out
    reals (the cached real side), keyed `eval/*`. spec: prepared (`prepare_eval_spec`).
    cache_features: keep the fakes' features on disk by their content (for samples that
    will be scored again, such as real ones; generated ones never repeat)."""
    if not set(spec.eval.metrics) - {"modes"}:
        return score(spec, Merged(fakes, None, None, None, {}), None, round_index=0)
    sample_shape, _ = describe_dataset(spec.data)
    extractor = build_extractor(spec, sample_shape, torch.device(device))
    reference = real_reference(spec, extractor)
    is_image = is_image_data(spec.data.name)
    features, probs = (cached_extract(extractor, spec, fakes, scale, is_image) if cache_features
                       else extract(extractor, fakes, scale, is_image))
    return score(spec, Merged(fakes, features, FeatureStats.from_features(features), probs, {}), reference,
                 round_index=0)
