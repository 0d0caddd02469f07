"""`zerosum sync RUN_FOLDER`: send what a run kept while its tracking server was away."""

from __future__ import annotations

import argparse
from pathlib import Path

from zerosum.errors import ZerosumError


def cmd_sync(args: argparse.Namespace) -> int:
    from zerosum.records import RECORD_FILE
    from zerosum.train.driver import sync_run

    folder = args.run_folder
    if not (folder / RECORD_FILE).is_file():
        raise ZerosumError(f"{folder}: not a run folder (no {RECORD_FILE}); pass the folder `zerosum run` printed")
    sent, model_uri = sync_run(folder)
    print(f"sent {sent} tracking writes from {folder}")
    print(f"model:        {model_uri}" if model_uri else "the run's results were logged before: nothing else to send")
    return 0


def register_commands(commands) -> None:
    sync = commands.add_parser("sync", help="send a run's kept tracking writes and results to MLflow",
                               description="Send the metrics, tags and images a run kept on disk while its "
                                           "MLflow server did not answer, in order, then log and register its "
                                           "generator if the run ended before it could.")
    sync.add_argument("run_folder", type=Path, help="the run folder (printed by `zerosum run`)")
    sync.set_defaults(handler=cmd_sync)
