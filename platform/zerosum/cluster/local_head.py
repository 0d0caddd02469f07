"""`zerosum up` / `zerosum down`: a local Ray head kept running, so that runs attach to it.

Starting Ray costs seconds on every `zerosum run` and `zerosum tune`; a head that stays
up pays it once. `zerosum up` starts `ray start --head --block` in its own session,
with token auth on (a token of its own, mode 600), the dashboard and the GCS on
127.0.0.1, free ports for Ray's other servers, and a short temp dir under /tmp (Ray's
socket paths must stay under 107 bytes). Its state lives in `$ZEROSUM_HOME/head/`
(default `~/.zerosum/head/`):

    head.json    pid, GCS address, dashboard URL, token path, temp dir, start time
    auth_token   the head's token
    head.log     what `ray start` printed

`runtime.init_ray` attaches to that head when RAY_ADDRESS is not set. `zerosum down`
stops it by its pid (never `ray stop`, which would stop every Ray instance of the user).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from zerosum.errors import ZerosumError
from zerosum.files import atomic_write_text

HOME_ENV = "ZEROSUM_HOME"
STATE_FILE, TOKEN_FILE, LOG_FILE = "head.json", "auth_token", "head.log"
READY_LINE = "Ray runtime started"
START_TIMEOUT_S = 120.0
# `ray start --block` stops its processes on SIGTERM within seconds; what is left then is killed.
STOP_GRACE_S = 10.0
# `ray start` flags whose defaults are fixed ports: each gets a free one, so that this
# head cannot collide with another Ray instance on the machine.
PORT_FLAGS = ("--node-manager-port", "--object-manager-port", "--metrics-export-port", "--runtime-env-agent-port",
              "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port", "--ray-client-server-port")


@dataclass(frozen=True)
class HeadState:
    pid: int
    address: str        # GCS, 127.0.0.1:PORT: what ray.init(address=...) takes
    dashboard: str      # http://127.0.0.1:PORT: the Jobs API, for `zerosum submit --address`
    token_path: str
    temp_dir: str
    num_cpus: int | None
    started_at: float

    def client_env(self) -> dict[str, str]:
        """The variables a Ray client needs to reach this head."""
        return {"RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token_path}


def head_dir() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".zerosum") / "head"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_head(folder: Path | None = None) -> HeadState | None:
    """The running head of `folder` (default head_dir()), or None: none started, or its
    process is gone (then its stale state file is removed)."""
    path = (folder or head_dir()) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = HeadState(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        raise ZerosumError(f"{path}: not a zerosum head state file; remove it, or run `zerosum down`") from None
    if not pid_alive(state.pid):
        path.unlink(missing_ok=True)
        return None
    return state


def head_token(folder: Path) -> Path:
    """The head's own token file (made once, mode 600): never ~/.ray/auth_token, the user's."""
    path = folder / TOKEN_FILE
    if not path.is_file() or not path.read_text().strip():
        folder.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(secrets.token_hex(32))
    return path


def ray_start_command(gcs_port: int, dashboard_port: int, temp_dir: str, num_cpus: int | None) -> list[str]:
    ray = Path(sys.executable).parent / "ray"
    cpus = [] if num_cpus is None else ["--num-cpus", str(num_cpus)]
    ports = [str(arg) for flag in PORT_FLAGS for arg in (flag, free_port())]
    return [str(ray), "start", "--head", "--block", "--disable-usage-stats", "--port", str(gcs_port),
            "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1", "--dashboard-port",
            str(dashboard_port), "--temp-dir", temp_dir, *cpus, *ports]


def start_head(num_cpus: int | None = None, folder: Path | None = None,
               timeout_s: float = START_TIMEOUT_S) -> tuple[HeadState, bool]:
    """Start the head, or find the one already up. -> (its state, whether it was started now)."""
    folder = folder or head_dir()
    running = read_head(folder)
    if running is not None:
        return running, False
    token = head_token(folder)
    temp_dir = tempfile.mkdtemp(prefix="zsh.", dir="/tmp")
    gcs_port, dashboard_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")},
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           # Draining on SIGTERM is for Serve replicas: a local head stops at once (`zerosum down`).
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
           # Jobs submitted to this head run `python`: make it this environment's.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = folder / LOG_FILE
    with open(log, "w") as out:
        process = subprocess.Popen(ray_start_command(gcs_port, dashboard_port, temp_dir, num_cpus), env=env,
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    wait_for_ray_start(process, log, "the Ray head", timeout_s)
    state = HeadState(process.pid, f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dashboard_port}", str(token),
                      temp_dir, num_cpus, time.time())
    atomic_write_text(json.dumps(asdict(state), indent=2), folder / STATE_FILE)
    return state, True


def wait_for_ray_start(process: subprocess.Popen, log: Path, what: str, timeout_s: float) -> None:
    """Return once the `ray start --block` in `process` says its node is up (in `log`);
    else stop it and raise ZerosumError with the log's last line."""
    deadline = time.monotonic() + timeout_s
    while READY_LINE not in log.read_text():
        exited = process.poll() is not None
        if exited or time.monotonic() > deadline:
            stop_process_group(process.pid)
            tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
            when = "exited before it was up" if exited else f"was not up within {timeout_s:.0f} s"
            raise ZerosumError(f"{what} {when}: {tail[0]} (see {log})")
        time.sleep(0.25)


def stop_process_group(pid: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM `pid` (`ray start --block` then stops its processes), and SIGKILL its
    session's group if anything is left after `grace_s`."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while pid_alive(pid) and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reaps it when this process is its parent
        except ChildProcessError:
            pass
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_head(folder: Path | None = None) -> HeadState | None:
    """Stop the running head by its pid; -> its state, or None when none was up."""
    folder = folder or head_dir()
    state = read_head(folder)
    if state is None:
        return None
    stop_process_group(state.pid)
    (folder / STATE_FILE).unlink(missing_ok=True)
    return state
