"""Talking to a Ray head's Jobs API: address, auth token, clear errors, waiting and tailing.

Built on Ray's `JobSubmissionClient`. The token is sent as `Authorization: Bearer
<token>`, the same header Ray's own client sends when `RAY_AUTH_MODE=token`
(Ray adds its header only when the caller has not set one, so the two agree).
Every failure a user can cause or fix (head down, wrong address, wrong token,
unknown job) becomes one `ZerosumError` that says what to do.
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

    def wait(self, job_id: str, on_change: Callable[[str], None] | None = None,
             timeout_s: float | None = None) -> str:
        """Poll until the job is SUCCEEDED, FAILED or STOPPED; returns that status."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last = None
        while True:
            status = self.status(job_id)
            if status != last and on_change:
                on_change(status)
            last = status
            if status in TERMINAL_STATUSES:
                return status
            if deadline is not None and time.monotonic() > deadline:
                return status
            time.sleep(POLL_SECONDS)

    def follow(self, job_id: str, write: Callable[[str], None]) -> None:
        """Stream the job's logs to `write` until the job ends (Ray's websocket tail)."""

        async def tail() -> None:
            async for chunk in self.client.tail_job_logs(job_id):
                write(chunk)

        with self.errors(job_id):
            asyncio.run(tail())


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
