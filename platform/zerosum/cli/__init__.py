"""`zerosum` command line: one module per verb, each with `register_commands(commands)`.

Importing this package, building the parser and `--help` load no torch, Ray or
MLflow: each command imports what it needs when it runs. User mistakes
(ZerosumError, ConfigError) print one `error:` line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from zerosum import __version__
from zerosum.cli import benchmark, featurizer, jobs, run, sample, submit, sync, translate, tune, ui, up
from zerosum.cli import eval as eval_command
from zerosum.cli.common import OneLineErrorParser
from zerosum.errors import ZerosumError

COMMAND_MODULES = (run, sample, translate, eval_command, featurizer, tune, benchmark, submit, jobs, ui, sync, up)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="zerosum", description="Train and evaluate GANs on Ray, tracked in MLflow.")
    parser.add_argument("--version", action="version", version=f"zerosum {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and Ray's worker and controller logs live on the console")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not args.verbose:
        # MLflow's INFO lines (creating store tables, ...) are about MLflow, not the run. MLflow
        # sets its logger's level when it is imported, from this variable.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return args.handler(args)
    except ZerosumError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Whoever read stdout has stopped (`zerosum validate SPEC | head`): nothing is wrong
        # with the command. stdout goes to /dev/null so that the flush at exit cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away
