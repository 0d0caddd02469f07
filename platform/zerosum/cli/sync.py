"""`zerosum sync FOLDER`: send what a run or campaign kept while its tracking server was away."""

from __future__ import annotations

import argparse
from pathlib import Path

from zerosum.errors import ZerosumError


def cmd_sync(args: argparse.Namespace) -> int:
    from zerosum.records import RECORD_FILE, FolderRecord

    folder = args.run_folder
    if not (folder / RECORD_FILE).is_file():
        raise ZerosumError(f"{folder}: not a run or campaign folder (no {RECORD_FILE}); "
                           "pass the folder `zerosum run` or `zerosum tune` printed")
    if FolderRecord.load(folder).kind == "campaign":
        from zerosum.tune.driver import sync_campaign

        sent, model_uri = sync_campaign(folder)
    else:
        from zerosum.train.driver import sync_run

        sent, model_uri = sync_run(folder)
    print(f"sent {sent} tracking writes from {folder}")
    print(f"model:        {model_uri}" if model_uri else "the results were logged before: nothing else to send")
    return 0


def register_commands(commands) -> None:
    sync = commands.add_parser("sync", help="send a run's or campaign's kept tracking writes and results to MLflow",
                               description="Send the metrics, tags and images a run (or a campaign's trials) "
                                           "kept on disk while the MLflow server did not answer, in order, then "
                                           "log and register the generator (or the champion) if the end of the "
                                           "run or campaign could not.")
    sync.add_argument("run_folder", type=Path, metavar="FOLDER",
                      help="the run or campaign folder (printed by `zerosum run` or `zerosum tune`)")
    sync.set_defaults(handler=cmd_sync)
