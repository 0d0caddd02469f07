"""Talking to a Ray head's Jobs API: address, auth token, clear errors, waiting and tailing.

Built on Ray's `JobSubmissionClient`. The token is sent as `Authorization: Bearer
<token>`, the same header Ray's own client sends when `RAY_AUTH_MODE=token`
(Ray adds its header only when the caller has not set one, so the two agree).
Every failure a user can cause or fix (head down, wrong address, wrong token,
unknown job) becomes one `ZerosumError` that says what to do.

The cluster's resources and pending demand come from the dashboard's
`/api/cluster_status` (what `ray status` prints), which the autoscaler monitor on the
head refreshes every few seconds: `cluster_resources` reads the totals and whether
an autoscaler can add nodes, `pending_demand` what Ray cannot place yet, and
`DemandWatch` reports a demand that persists while `--wait`/`--follow` wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from zerosum.errors import ZerosumError, first_line

TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_PATH = Path("~/.ray/auth_token")
# Ray's own precedence: RAY_API_SERVER_ADDRESS, then RAY_ADDRESS.
ADDRESS_ENVS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "STOPPED")
# (connect, read) seconds for each HTTP request; uploads of zerosum itself are small.
REQUEST_TIMEOUT_S = (10.0, 300.0)
POLL_SECONDS = 2.0
CLUSTER_STATUS_ENDPOINT = "/api/cluster_status"
# (connect, read) seconds for a cluster-status read: a few KB, read often while waiting.
STATUS_TIMEOUT_S = (5.0, 10.0)
# How often a wait reads the pending demand (the monitor refreshes it about every 5 s),
# and for how long, by the monitor's clock, a demand must stay before it is reported: a
# job that starts normally has its requests pending for a moment, not in two snapshots.
DEMAND_POLL_S = 5.0
DEMAND_PERSIST_S = 5.0
# Job statuses in which the job can be waiting for resources (its driver, or its workers).
WAITING_STATUSES = ("PENDING", "RUNNING")


@dataclass(frozen=True)
class Token:
    """A Ray auth token and where it came from (for messages; never the value)."""

    value: str | None
    source: str


def resolve_token(environ: dict[str, str] | None = None, home: Path | None = None) -> Token:
    """RAY_AUTH_TOKEN, else the file at RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token (Ray's order).

    A RAY_AUTH_TOKEN_PATH that cannot be read is an error, as it is for Ray itself.
    No token at all is allowed: the head may have auth disabled (it will say if not).
    """
    environ = os.environ if environ is None else environ
    if environ.get(TOKEN_ENV, "").strip():
        return Token(environ[TOKEN_ENV].strip(), TOKEN_ENV)
    if environ.get(TOKEN_PATH_ENV):
        path = Path(environ[TOKEN_PATH_ENV]).expanduser()
        token = _read_token_file(path)
        if token is None:
            raise ZerosumError(f"{TOKEN_PATH_ENV}={path}: the file is missing or empty; "
                               f"point it at the Ray auth token file, or unset it")
        return Token(token, f"{TOKEN_PATH_ENV}={path}")
    default = (home / ".ray" / "auth_token") if home else DEFAULT_TOKEN_PATH.expanduser()
    token = _read_token_file(default)
    return Token(token, str(default)) if token else Token(None, "none found")


def _read_token_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def resolve_address(address: str | None, environ: dict[str, str] | None = None) -> str:
    """--address, else RAY_API_SERVER_ADDRESS, else RAY_ADDRESS; `HOST:PORT` gets `http://`."""
    environ = os.environ if environ is None else environ
    chosen = address or next((environ[name] for name in ADDRESS_ENVS if environ.get(name)), None)
    if not chosen:
        raise ZerosumError("no Ray head given: pass --address http://HEAD:8265 (the dashboard address) "
                           "or set RAY_ADDRESS")
    chosen = chosen.strip().rstrip("/")
    if "://" not in chosen and chosen != "auto":
        chosen = f"http://{chosen}"
    return chosen


def auth_headers(token: Token) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.value}"} if token.value else {}


@contextlib.contextmanager
def _without_address_env() -> Iterator[None]:
    """Ray lets RAY_ADDRESS override an explicit address; here --address must win."""
    saved = {name: os.environ.pop(name) for name in ADDRESS_ENVS if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _client_class():
    """JobSubmissionClient with a timeout on every request (pinned to ray==2.60's `_do_request`)."""
    from ray.job_submission import JobSubmissionClient

    class TimedJobSubmissionClient(JobSubmissionClient):
        def _do_request(self, method, endpoint, **kwargs):
            kwargs.setdefault("timeout", REQUEST_TIMEOUT_S)
            return super()._do_request(method, endpoint, **kwargs)

    return TimedJobSubmissionClient


def is_loopback(url: str) -> bool:
    """Does the URL (or HOST:PORT) name this machine's loopback (127.0.0.0/8, ::1, localhost)?"""
    from urllib.parse import urlparse

    host = urlparse(url if "://" in url else f"http://{url}").hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def token_transport_problem(address: str, token: Token, insecure: bool = False) -> str | None:
    """Why the token must not be sent to `address`, or None.

    A bearer token sent over plain http crosses the network readable by anyone on the
    path; over loopback (a tunnel's local end) or https it does not."""
    if token.value is None or insecure or address.startswith("https://") or is_loopback(address):
        return None
    return (f"refusing to send the Ray auth token over plain http to {address}: anyone on the way can "
            f"read it. Reach the head through a tunnel and pass its local end, e.g. "
            f"`kubectl -n zerosum port-forward svc/zerosum-head-svc 8265:8265` or `ray dashboard CLUSTER.yaml`, "
            f"then --address http://127.0.0.1:8265; or use https; or pass --insecure to send it anyway")


class Head:
    """One Ray head's Jobs API, with every call's errors turned into ZerosumError.

    insecure: send the token over plain http to a non-loopback address (refused otherwise)."""

    def __init__(self, address: str | None = None, token: Token | None = None, insecure: bool = False):
        self.address = resolve_address(address)
        self.token = token or resolve_token()
        problem = token_transport_problem(self.address, self.token, insecure)
        if problem:
            raise ZerosumError(problem)
        with self.errors(), _without_address_env():
            self.client = _client_class()(self.address, headers=auth_headers(self.token))

    @contextlib.contextmanager
    def errors(self, job_id: str | None = None) -> Iterator[None]:
        """Translate Ray/requests/aiohttp failures into one clear ZerosumError."""
        try:
            yield
        except ZerosumError:
            raise
        except Exception as err:  # noqa: BLE001 - every failure gets a message, none a traceback
            raise ZerosumError(explain_failure(err, self.address, self.token, job_id)) from None

    def status(self, job_id: str) -> str:
        with self.errors(job_id):
            return str(self.client.get_job_status(job_id).value)

    def cluster_status(self) -> dict | None:
        """The autoscaler's view of the cluster (totals, usage, pending demand), or None.

        None when the head has none to give (no monitor writes it, e.g. autoscaler v2) or
        the read fails: callers use it to say more, never to stop what they were doing."""
        try:
            response = self.client._do_request("GET", CLUSTER_STATUS_ENDPOINT, timeout=STATUS_TIMEOUT_S)
            response.raise_for_status()
            status = response.json()["data"].get("clusterStatus")
        except Exception:  # noqa: BLE001 - best effort, see above
            return None
        return status if isinstance(status, dict) else None

    def wait(self, job_id: str, on_change: Callable[[str], None] | None = None,
             timeout_s: float | None = None, on_poll: Callable[[str], None] | None = None) -> str:
        """Poll until the job is SUCCEEDED, FAILED or STOPPED; returns that status.

        on_poll(status) runs after every poll (a DemandWatch, say)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last = None
        while True:
            status = self.status(job_id)
            if status != last and on_change:
                on_change(status)
            last = status
            if status in TERMINAL_STATUSES:
                return status
            if on_poll:
                on_poll(status)
            if deadline is not None and time.monotonic() > deadline:
                return status
            time.sleep(POLL_SECONDS)

    def follow(self, job_id: str, write: Callable[[str], None],
               on_poll: Callable[[str], None] | None = None) -> None:
        """Stream the job's logs to `write` until the job ends (Ray's websocket tail).

        on_poll(status), if given, runs every DEMAND_POLL_S beside the tail, with the job's status."""

        async def tail() -> None:
            async for chunk in self.client.tail_job_logs(job_id):
                write(chunk)

        async def poll() -> None:
            while True:
                await asyncio.sleep(DEMAND_POLL_S)
                try:
                    status = await asyncio.to_thread(self.status, job_id)
                except ZerosumError:
                    return  # the tail says whatever went wrong; polling is only extra words
                on_poll(status)

        async def tail_and_poll() -> None:
            poller = asyncio.create_task(poll()) if on_poll else None
            try:
                await tail()
            finally:
                if poller:
                    poller.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await poller

        with self.errors(job_id):
            asyncio.run(tail_and_poll())


# The first line of Ray's message for a job whose entrypoint exited non-zero; the tail of
# the job's logs follows it.
ENTRYPOINT_FAILED_PREFIX = "Job entrypoint command failed"
# How zerosum's own refusals start (cli/__init__.py): one line naming the field and what is allowed.
ERROR_PREFIX = "error: "


def job_failure_line(message: str | None, logs: str | None = None) -> str | None:
    """The one line that says why a job failed, from Ray's message (or the job's logs).

    The last `error: ` line that zerosum printed on the cluster (its own one-line
    refusal), else the last line of the logs (a traceback's exception), else the first
    line of Ray's message (a runtime env that could not be set up, say)."""
    text = (message or "").strip()
    head_line, _, tail = text.partition("\n")
    if not head_line.startswith(ENTRYPOINT_FAILED_PREFIX):
        tail = ""
    lines = [line.strip() for line in (tail or logs or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    if errors:
        return errors[-1]
    if lines:
        return lines[-1]
    return head_line or None


def explain_failure(err: Exception, address: str, token: Token, job_id: str | None = None) -> str:
    """One message that says what went wrong talking to the head and what to do."""
    status = _http_status(err)
    text = str(err).strip()
    if status in (401, 403) or type(err).__name__ == "AuthenticationError":
        return _auth_message(address, token, status, text)
    if _is_unreachable(err):
        return (f"cannot reach the Ray head at {address}: {first_line(text)}; is it running? "
                f"is --address/RAY_ADDRESS right? (it is the dashboard address, e.g. http://HEAD:8265)")
    if status == 404 or "status code 404" in text or "does not exist" in text:
        what = f"no job '{job_id}'" if job_id else "not found"
        return f"{what} on the Ray head at {address} (`zerosum jobs list` shows the jobs)"
    return f"talking to the Ray head at {address} failed: {type(err).__name__}: {first_line(text)}"


def _auth_message(address: str, token: Token, status: int | None, text: str) -> str:
    if token.value is None or status == 401 or "Authentication required" in text:
        return (f"the Ray head at {address} requires an auth token and none was sent "
                f"(looked in {TOKEN_ENV}, {TOKEN_PATH_ENV} and ~/.ray/auth_token); set {TOKEN_ENV} "
                f"or {TOKEN_PATH_ENV} to the cluster's token (`ray get-auth-token` on the head prints it)")
    return (f"the Ray head at {address} refused the auth token (from {token.source}); set {TOKEN_ENV} "
            f"or {TOKEN_PATH_ENV} to the cluster's token (`ray get-auth-token` on the head prints it)")


def _http_status(err: Exception) -> int | None:
    """The HTTP status inside requests/aiohttp errors, if any."""
    response = getattr(err, "response", None)
    for candidate in (getattr(response, "status_code", None), getattr(err, "status", None)):
        if isinstance(candidate, int):
            return candidate
    return None


def _is_unreachable(err: Exception) -> bool:
    import requests

    try:
        import aiohttp
        aiohttp_errors: tuple = (aiohttp.ClientConnectionError,)
    except ImportError:
        aiohttp_errors = ()
    unreachable = (ConnectionError, requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                   requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, *aiohttp_errors)
    return isinstance(err, unreachable) or "Failed to connect to Ray" in str(err)


# --------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class ClusterResources:
    """A cluster's logical CPUs and GPUs now, from its autoscaler status.

    fixed: no autoscaler can add nodes (the head runs Ray's read-only monitor, as on a
    `ray start` cluster), so the totals are all the cluster will ever have."""

    total: dict[str, float]
    used: dict[str, float]
    largest_node: dict[str, float]
    fixed: bool


SCHEDULED_RESOURCES = ("CPU", "GPU")


def cluster_resources(status: dict) -> ClusterResources | None:
    """Totals, usage and the largest node's share of CPU and GPU; None if the status has none.

    `usage` maps a resource to [used, total]. The read-only monitor names every node's
    type `node_<node id>`; an autoscaler names them after its configured node types."""
    report = status.get("loadMetricsReport") or {}
    usage = report.get("usage") or {}
    if "CPU" not in usage:
        return None

    def pair(table: dict, name: str) -> tuple[float, float]:
        used, total = (table.get(name) or (0.0, 0.0))[:2]
        return float(used), float(total)

    nodes = list((report.get("usageByNode") or {}).values())
    total = {name: pair(usage, name)[1] for name in SCHEDULED_RESOURCES}
    largest = {name: max((pair(node, name)[1] for node in nodes), default=total[name])
               for name in SCHEDULED_RESOURCES}
    mapping = (status.get("autoscalerReport") or {}).get("nodeTypeMapping") or {}
    fixed = bool(mapping) and all(kind == f"node_{node_id}" for node_id, kind in mapping.items())
    return ClusterResources(total=total, used={name: pair(usage, name)[0] for name in SCHEDULED_RESOURCES},
                            largest_node=largest, fixed=fixed)


def format_bundle(bundle: dict) -> str:
    """{'CPU': 1.0, 'memory': 268435456.0} -> '{CPU: 1, memory: 0.25 GiB}'."""
    parts = []
    for name, amount in bundle.items():
        if name in ("memory", "object_store_memory"):
            parts.append(f"{name}: {amount / 2**30:.3g} GiB")
        else:
            parts.append(f"{name}: {amount:g}")
    return "{" + ", ".join(parts) + "}"


def pending_demand(status: dict) -> list[str]:
    """What Ray cannot place yet, as `ray status` lists it under "Pending Demands".

    resourceDemand holds tasks and actors ([bundle, count]); pgDemand placement groups
    ([{bundles: [[bundle, count], ...], strategy}, count]); requestDemand what
    `ray.autoscaler.sdk.request_resources` asked for."""
    report = status.get("loadMetricsReport") or {}
    demand = [f"{format_bundle(bundle)} x {count} (tasks/actors)" for bundle, count in report.get("resourceDemand") or []]
    for group, count in report.get("pgDemand") or []:
        bundles = ", ".join(f"{format_bundle(bundle)} x {n}" for bundle, n in group.get("bundles") or [])
        groups = "placement group" if count == 1 else f"{count} placement groups"
        demand.append(f"{bundles} ({groups}, {group.get('strategy', '?')})")
    demand += [f"{format_bundle(bundle)} x {count} (request_resources)" for bundle, count in report.get("requestDemand") or []]
    return demand


def waiting_message(demand: str, resources: ClusterResources | None, seconds: float) -> str:
    """The line `--wait`/`--follow` print for a demand that has stayed pending."""
    in_use = ""
    if resources:
        shown = [name for name in SCHEDULED_RESOURCES if name == "CPU" or resources.total[name]]
        in_use = "; in use: " + ", ".join(f"{resources.used[n]:g}/{resources.total[n]:g} {n}" for n in shown)
    return (f"waiting for resources: Ray's pending demand for {seconds:.0f} s (this job's, or another's): "
            f"{demand}{in_use}; it is placed when running jobs free resources or an autoscaler adds nodes "
            f"(`zerosum jobs list` shows the jobs)")


class DemandWatch:
    """Reads the cluster's pending demand while a job is PENDING or RUNNING, and says the
    `waiting_message` once per demand that stays DEMAND_PERSIST_S by the monitor's clock.

    The demand is the whole cluster's (Ray's summary does not name the job behind a
    request), so another job's shows too, and the message says so."""

    def __init__(self, read_status: Callable[[], dict | None], say: Callable[[str], None],
                 poll_s: float = DEMAND_POLL_S, persist_s: float = DEMAND_PERSIST_S,
                 clock: Callable[[], float] = time.monotonic):
        self.read_status, self.say = read_status, say
        self.poll_s, self.persist_s, self.clock = poll_s, persist_s, clock
        self.next_read = clock()
        self.seen: str | None = None      # the demand in the last status read
        self.since: float | None = None   # the monitor's time it was first seen
        self.reported: str | None = None

    def __call__(self, job_status: str) -> None:
        if job_status not in WAITING_STATUSES or self.clock() < self.next_read:
            return
        self.next_read = self.clock() + self.poll_s
        status = self.read_status()
        message = self.observe(status) if status else None
        if message:
            self.say(message)

    def observe(self, status: dict) -> str | None:
        """The message to give for this status read, if any (no I/O: tests feed it payloads)."""
        demand = "; ".join(pending_demand(status))
        at = float(status.get("time") or 0.0)
        if not demand:
            self.seen = self.since = None
            return None
        if demand != self.seen:
            self.seen, self.since = demand, at
            return None
        if at - self.since < self.persist_s or demand == self.reported:
            return None
        self.reported = demand
        return waiting_message(demand, cluster_resources(status), at - self.since)
