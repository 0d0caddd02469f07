"""Domain featurizers: train evals' small classifier on a labelled dataset and cache it.

`zerosum featurizer train --dataset mnist --root ../shared/data/mnist` trains the CNN
(evals.classifier) on the training split, reports its test accuracy and saves the
weights under `$ZEROSUM_CACHE/featurizers/` (default ~/.cache/zerosum). `zerosum run`
trains it the same way, once, when a job asks for classifier features and names none.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from evals.classifier import accuracy, fit_classifier, save_classifier
from evals.inception import cache_dir
from pydantic import ValidationError

from zerosum.config import DataSpec, JobSpec, format_validation_error
from zerosum.data import load_dataset, to_unit_images
from zerosum.errors import ConfigError

log = logging.getLogger(__name__)

# Epochs that reach the accuracy below on 2 CPU cores in about a minute or less.
EPOCHS = {"mnist": 2, "fashion-mnist": 4, "digits": 40}
MIN_TEST_ACCURACY = {"mnist": 0.98, "fashion-mnist": 0.88, "digits": 0.90}


def featurizer_path(data: DataSpec) -> Path:
    """Where the cached classifier for this dataset lives."""
    return cache_dir() / "featurizers" / f"{data.name}.pt"


def train_featurizer(data: DataSpec, out: Path, epochs: int | None = None, seed: int = 0) -> float:
    """Train on the training split, save to `out`, return the test accuracy in [0, 1]."""
    if data.name not in EPOCHS:
        raise ConfigError(f"--dataset: a featurizer needs labelled images ({', '.join(EPOCHS)}), got {data.name}")
    unit = data.model_copy(update={"scale": "unit", "limit": None})
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
    from zerosum.train.evaluation import EXTRACTOR_METRICS, feature_kind

    needs = set(spec.eval.metrics) & EXTRACTOR_METRICS and feature_kind(spec) == "classifier"
    if not needs or spec.eval.featurizer_path is not None:
        return spec
    path = featurizer_path(spec.data)
    if not path.is_file():
        train_featurizer(spec.data, path)
    return spec.model_copy(update={"eval": spec.eval.model_copy(update={"featurizer_path": path})})


def prepare_eval_spec(spec: JobSpec) -> JobSpec:
    """The spec ready for evaluation: featurizer filled in, impossible combinations refused."""
    from zerosum.train.evaluation import check_eval_spec

    spec = with_featurizer(spec)
    check_eval_spec(spec)
    return spec


def cmd_featurizer_train(args: argparse.Namespace) -> int:
    try:
        data = DataSpec.model_validate({"name": args.dataset, "root": args.root})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "--root", DataSpec).replace("  data.root: ", "  ")) from None
    out = args.out or featurizer_path(data)
    test_accuracy = train_featurizer(data, out, epochs=args.epochs, seed=args.seed)
    print(f"{args.dataset} featurizer: test accuracy {test_accuracy:.4f}")
    print(f"weights: {out}")
    return 0


def register_commands(commands) -> None:
    featurizer = commands.add_parser("featurizer", help="domain feature networks for FID on small datasets")
    actions = featurizer.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train the classifier featurizer of a labelled dataset")
    train.add_argument("--dataset", required=True, choices=sorted(EPOCHS))
    train.add_argument("--root", type=Path, help="folder of the IDX files (mnist, fashion-mnist)")
    train.add_argument("--epochs", type=int, default=None, help="default: per dataset")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("-o", "--out", type=Path, default=None, help="default: the zerosum cache")
    train.set_defaults(handler=cmd_featurizer_train)
