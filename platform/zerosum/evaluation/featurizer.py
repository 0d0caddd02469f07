"""Domain featurizers: train evals' small classifier on a labelled dataset and cache it.

`zerosum featurizer train --dataset mnist --root ../shared/data/mnist` trains the CNN
(evals.classifier) on the training split, reports its test accuracy and saves the
weights under `$ZEROSUM_CACHE/featurizers/` (default ~/.cache/zerosum). `zerosum run`
trains it the same way, once, when a job asks for classifier features and names none.
A dataset whose channels are another dataset's images (stacked-mnist: `channels_of`
mnist) shares that dataset's classifier, which judges it channel by channel
(evaluation/channels.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from evals.classifier import accuracy, fit_classifier, save_classifier
from zerosum.catalog import DATASETS
from zerosum.config import DataSpec, JobSpec
from zerosum.data import images_only, load_dataset, to_unit_images
from zerosum.errors import ConfigError
from zerosum.evaluation.plan import EXTRACTOR_METRICS, check_eval_spec, feature_kind
from zerosum.files import cache_dir

log = logging.getLogger(__name__)

# Epochs that reach a test accuracy of 98% (mnist), 88% (fashion-mnist) and 90% (digits) on
# 2 CPU cores in about a minute or less.
EPOCHS = {"mnist": 2, "fashion-mnist": 4, "digits": 40}


def classified_as(data: DataSpec) -> DataSpec:
    """The data whose classifier judges `data`: itself, or for stacked-mnist the MNIST
    digits of each channel (same root)."""
    channels_of = DATASETS[data.name].channels_of
    return data if channels_of is None else data.model_copy(update={"name": channels_of})


def featurizer_path(data: DataSpec) -> Path:
    """Where the cached classifier for this dataset lives (stacked-mnist: mnist's)."""
    return cache_dir() / "featurizers" / f"{classified_as(data).name}.pt"


def train_featurizer(data: DataSpec, out: Path, epochs: int | None = None, seed: int = 0) -> float:
    """Train on the training split, save to `out`, return the test accuracy in [0, 1]
    (stacked-mnist: the MNIST classifier that judges each channel)."""
    data = classified_as(data)
    if data.name not in EPOCHS:
        raise ConfigError(f"--dataset: a featurizer needs labelled images ({', '.join(EPOCHS)}), got {data.name}")
    unit = images_only(data).model_copy(update={"scale": "unit", "limit": None})
    train, test = load_dataset(unit, "train"), load_dataset(unit, "test")
    epochs = epochs or EPOCHS[data.name]
    log.info("training the %s featurizer: %d images, %d epochs", data.name, len(train), epochs)
    model = fit_classifier(to_unit_images(train.samples, "unit"), train.labels, epochs=epochs, seed=seed,
                           num_classes=train.num_classes)
    test_accuracy = accuracy(model, test.samples, test.labels)
    save_classifier(model, out, {"dataset": data.name, "test_accuracy": test_accuracy, "epochs": epochs})
    log.info("%s featurizer: test accuracy %.4f, saved to %s", data.name, test_accuracy, out)
    return test_accuracy


def with_featurizer(spec: JobSpec) -> JobSpec:
    """The spec with eval.featurizer_path filled in (training the classifier once if needed)."""
    needs = set(spec.eval.metrics) & EXTRACTOR_METRICS and feature_kind(spec) == "classifier"
    if not needs or spec.eval.featurizer_path is not None:
        return spec
    path = featurizer_path(spec.data)
    if not path.is_file():
        train_featurizer(spec.data, path)
    return spec.model_copy(update={"eval": spec.eval.model_copy(update={"featurizer_path": path})})


def prepare_eval_spec(spec: JobSpec) -> JobSpec:
    """The spec ready for evaluation: featurizer filled in, impossible combinations refused."""
    spec = with_featurizer(spec)
    check_eval_spec(spec)
    return spec
