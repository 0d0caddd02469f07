"""`zerosum featurizer train`: train and cache the classifier behind domain FID."""

from __future__ import annotations

import argparse
from pathlib import Path

from zerosum.catalog import DATASETS
from zerosum.errors import ConfigError

# Labelled image datasets have a classifier featurizer.
FEATURIZER_DATASETS = sorted(n for n, info in DATASETS.items() if info.kind == "images" and info.labelled)


def check_root(dataset: str, root: Path | None) -> None:
    """A dataset read from files needs `--root`, an existing folder: said in the flag's
    terms (DataSpec's own check says data.root, a field this command has no spec for)."""
    if not DATASETS[dataset].on_disk:
        return
    if root is None:
        raise ConfigError(f"--root: dataset {dataset} is read from its IDX files; pass --root FOLDER")
    if not root.is_dir():
        raise ConfigError(f"--root: {root} is not a folder; point it at the folder holding the {dataset} IDX files")


def cmd_featurizer_train(args: argparse.Namespace) -> int:
    from zerosum.config import DataSpec
    from zerosum.evaluation.featurizer import featurizer_path, train_featurizer

    check_root(args.dataset, args.root)
    data = DataSpec.model_validate({"name": args.dataset, "root": args.root})
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
