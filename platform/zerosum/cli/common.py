"""Arguments that several commands share, defined once. Imports no torch, Ray or MLflow."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_set_argument(parser: argparse.ArgumentParser, help_text: str | None = None) -> None:
    """`--set a.b=value`, repeatable, into `args.overrides`."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="A.B=VALUE",
                        help=help_text or "override a field, e.g. --set optim.d.lr=1e-3 (repeatable)")


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """A job spec path and its `--set` overrides."""
    parser.add_argument("spec", type=Path, help="job spec (YAML)")
    add_set_argument(parser)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, else a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
