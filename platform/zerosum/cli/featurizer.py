"""`zerosum featurizer train`: train and cache the classifier behind domain FID."""

from __future__ import annotations

import argparse
from pathlib import Path

from zerosum.catalog import DATASETS

# Labelled image datasets have a classifier featurizer.
FEATURIZER_DATASETS = sorted(n for n, info in DATASETS.items() if info.kind == "images" and info.labelled)


def cmd_featurizer_train(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from zerosum.config import DataSpec, format_validation_error
    from zerosum.errors import ConfigError
    from zerosum.evaluation.featurizer import featurizer_path, train_featurizer

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
    train.add_argument("--dataset", required=True, choices=FEATURIZER_DATASETS)
    train.add_argument("--root", type=Path, help="folder of the IDX files (mnist, fashion-mnist)")
    train.add_argument("--epochs", type=int, default=None, help="default: per dataset")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("-o", "--out", type=Path, default=None, help="default: the zerosum cache")
    train.set_defaults(handler=cmd_featurizer_train)
