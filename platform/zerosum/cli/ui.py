"""`zerosum ui`: MLflow's UI on 127.0.0.1 over zerosum's store."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys

from zerosum.cli.common import port_number
from zerosum.errors import ZerosumError

HOST = "127.0.0.1"


def check_port_free(port: int, host: str = HOST) -> None:
    """ZerosumError naming the port when something already listens there.

    MLflow's server would find out only after starting, with a traceback from its worker
    and exit status 0; a bind on the same address says it before anything starts. The
    probe sets SO_REUSEADDR, as the server does, so a port a stopped server left in
    TIME_WAIT counts as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ZerosumError(f"--port {port}: {host}:{port} is in use ({err.strerror}); "
                               f"stop what listens there or pick another --port") from None


def cmd_ui(args: argparse.Namespace) -> int:
    check_port_free(args.port)
    from zerosum.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", HOST, "--port", str(args.port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    print(f"MLflow UI on http://{HOST}:{args.port} over {uri} (Ctrl-C to stop)")
    return subprocess.call(command, env=env)


def register_commands(commands) -> None:
    ui = commands.add_parser("ui", help="the MLflow UI on 127.0.0.1 over zerosum's store")
    ui.add_argument("--port", type=port_number, default=5000, help="port on 127.0.0.1 (default 5000)")
    ui.set_defaults(handler=cmd_ui)
