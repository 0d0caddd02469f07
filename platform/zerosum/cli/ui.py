"""`zerosum ui`: MLflow's UI on 127.0.0.1 over zerosum's store."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def cmd_ui(args: argparse.Namespace) -> int:
    from zerosum.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    print(f"MLflow UI on http://127.0.0.1:{args.port} over {uri} (Ctrl-C to stop)")
    return subprocess.call(command, env=env)


def register_commands(commands) -> None:
    ui = commands.add_parser("ui", help="the MLflow UI on 127.0.0.1 over zerosum's store")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=cmd_ui)
