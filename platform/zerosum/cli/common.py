"""Arguments that several commands share, and the parser class, defined once. Imports no torch, Ray or MLflow."""

from __future__ import annotations

import argparse
from pathlib import Path

# TCP ports a server can listen on (0 would let the OS pick one the printed URL cannot name).
PORT_RANGE = (1, 65535)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with usage mistakes as one `error:` line, like every other zerosum error.

    argparse prints the whole usage block before its message; the message (which
    argument, what is allowed) is what matters, and `--help` shows the usage. Subparsers
    inherit the class, so every command gets it. Exits 2, as argparse does.
    """

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


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


def port_number(text: str) -> int:
    """argparse type: a TCP port in 1..65535, else a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    low, high = PORT_RANGE
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
    return value
