"""A run's MLflow writes, kept on disk and sent in order: training never waits for the server.

Rank 0 appends every metric batch, tag batch and sample image to the run folder's
`tracking-outbox/` before anything is sent:

    journal.jsonl   one JSON entry per write: {"seq", "kind", "step", "time_ms", "data"}
    images/<seq>.png  the image of an "image" entry
    sent.json       {"seq": the last entry the server accepted}

A sender thread sends entries in `seq` order. When the server does not answer it
retries the same entry with backoff (1 s doubling to 30 s), so that nothing is
skipped and nothing overtakes; training goes on meanwhile. Each entry carries the
time it was made, so a metric re-sent after a crash between sending and recording
`sent.json` is the same row, which MLflow's store keeps once. At the end of a run
`close(timeout_s)` waits for the queue to drain; whatever is left stays on disk, and
`zerosum sync RUN_FOLDER` sends it later (`drain`).

Bounded: images stop being kept once `images/` holds `IMAGE_BUDGET_BYTES`; metrics
and tags (tens of bytes each) always are. The queue knows nothing of MLflow: what sends
an entry is `zerosum.tracking.send_outbox_entry`, bound to a run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zerosum.errors import first_line
from zerosum.files import atomic_write_text
from zerosum.pictures import save_png

log = logging.getLogger(__name__)

OUTBOX_FOLDER = "tracking-outbox"
JOURNAL_FILE = "journal.jsonl"
SENT_FILE = "sent.json"
IMAGE_BUDGET_BYTES = 256 * 1024 * 1024
BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 30.0
# One request must fail fast while the server is away: the sender, not MLflow's own
# retries (7 by default, minutes in all), decides when to try again.
REQUEST_TIMEOUT_S, REQUEST_RETRIES = "10", "0"
# How long close() waits for a request in flight to end (one request's timeout, plus a margin).
SENDER_JOIN_S = float(REQUEST_TIMEOUT_S) + 2.0


@dataclass(frozen=True)
class Entry:
    """One MLflow write. kind: "metrics" (data {key: value}), "tags" ({key: text}) or
    "image" (data {"key"}; the PNG is images/<seq>.png)."""

    seq: int
    kind: str
    step: int | None
    time_ms: int
    data: dict[str, Any]

    def line(self) -> str:
        return json.dumps({"seq": self.seq, "kind": self.kind, "step": self.step, "time_ms": self.time_ms,
                           "data": self.data}, allow_nan=True)


def read_journal(folder: Path) -> list[Entry]:
    """Every entry in the journal; a last line cut short by a crash is dropped (never sent,
    since an entry is queued only after its line is on disk)."""
    path = folder / JOURNAL_FILE
    if not path.is_file():
        return []
    entries = []
    for text in path.read_text().splitlines():
        try:
            entries.append(Entry(**json.loads(text)))
        except (ValueError, TypeError):
            log.warning("%s: a line cut short was dropped", path)
    return entries


def cut_partial_line(path: Path) -> None:
    """Drop a last line that a killed writer left without its newline: the next entry
    appended after it would otherwise be glued to it, and both lost."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as journal:
            journal.truncate(data.rfind(b"\n") + 1)


def read_sent(folder: Path) -> int:
    path = folder / SENT_FILE
    return int(json.loads(path.read_text())["seq"]) if path.is_file() else 0


FAIL_FAST_ENV = {"MLFLOW_HTTP_REQUEST_TIMEOUT": REQUEST_TIMEOUT_S, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": REQUEST_RETRIES}


def fail_fast_requests() -> None:
    """This process's MLflow HTTP requests time out in seconds and are not retried by MLflow
    (rank 0's outbox retries on its own schedule). Values a user set are kept."""
    for key, value in FAIL_FAST_ENV.items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def failing_fast():
    """fail_fast_requests for a block, the environment put back after: a driver's last drain
    must not wait minutes on a server that is away, but a later `zerosum sync` in the same
    process (tests) should retry as MLflow does."""
    saved = {key: os.environ.get(key) for key in FAIL_FAST_ENV}
    fail_fast_requests()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Outbox:
    """The on-disk queue of one run's writes and the thread that sends them.

    send: callable(entry) that raises while the server is away (tracking.outbox_sender(run, folder)).
    """

    def __init__(self, run_dir: Path, send: Callable[[Entry], None], start: bool = True):
        self.folder = run_dir / OUTBOX_FOLDER
        (self.folder / "images").mkdir(parents=True, exist_ok=True)
        self.send = send
        cut_partial_line(self.folder / JOURNAL_FILE)
        journal = read_journal(self.folder)
        sent_seq = read_sent(self.folder)
        self.next_seq = (journal[-1].seq if journal else 0) + 1
        self.queue = [entry for entry in journal if entry.seq > sent_seq]
        self.high_water: dict[str, int] = {}  # metric key -> highest step journaled (RunLogger skips below it)
        self.tag_keys: set[str] = set()
        for entry in journal:
            self.note(entry)
        self.image_bytes = sum(p.stat().st_size for p in (self.folder / "images").glob("*.png"))
        self.dropped_images = 0
        self.failures = 0
        self.stopped = False
        self.condition = threading.Condition()
        # Set by close(): ends a backoff early (new entries do not: they would turn the
        # backoff into a retry per write while the server is away).
        self.closing_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="zerosum-outbox", daemon=True)
        if start:
            self.thread.start()

    # -- producer side (the training loop)

    def put(self, kind: str, data: dict[str, Any], step: int | None = None, image: np.ndarray | None = None) -> None:
        """Journal one write (on disk first), then queue it for the sender.
        image: uint8 (H, W, 3) for an "image" entry, kept as images/<seq>.png."""
        with self.condition:
            entry = Entry(self.next_seq, kind, step, int(time.time() * 1000), data)
            if image is not None:
                if self.image_bytes >= IMAGE_BUDGET_BYTES:
                    self.dropped_images += 1
                    return
                path = self.folder / "images" / f"{entry.seq}.png"
                save_png(image, path)
                self.image_bytes += path.stat().st_size
            with (self.folder / JOURNAL_FILE).open("a") as journal:
                journal.write(entry.line() + "\n")
                journal.flush()
                os.fsync(journal.fileno())
            self.next_seq += 1
            self.note(entry)
            self.queue.append(entry)
            self.condition.notify()

    def note(self, entry: Entry) -> None:
        """Keep the journal's high-water marks: each metric's last step, every tag key."""
        if entry.kind == "metrics":
            for key in entry.data:
                self.high_water[key] = max(self.high_water.get(key, -1), entry.step)
        elif entry.kind == "tags":
            self.tag_keys.update(entry.data)

    def pending(self) -> int:
        with self.condition:
            return len(self.queue)

    def close(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for every entry to be sent, then stop the sender;
        -> how many entries are left on disk."""
        deadline = time.monotonic() + timeout_s
        self.closing_event.set()
        with self.condition:
            while self.queue and time.monotonic() < deadline and self.thread.is_alive():
                self.condition.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            left = len(self.queue)
        # The sender stops: what is left stays on disk for the next Outbox of this folder
        # (a restarted trial, `zerosum sync`), which must not race a second sender.
        self.stopped = True
        if self.thread.is_alive():
            self.thread.join(timeout=SENDER_JOIN_S)
        if self.dropped_images:
            log.warning(self.dropped_note())
        return left

    def dropped_note(self) -> str:
        return (f"{self.dropped_images} sample grids were not kept: the outbox's images "
                f"reached {IMAGE_BUDGET_BYTES >> 20} MiB")

    def send_now(self) -> tuple[int, int]:
        """Send the queue in order in this thread, stopping at the first failure (the
        sender thread must not be running). -> (sent, left)."""
        sent = 0
        self.refusal = None
        while self.queue:
            try:
                self.send(self.queue[0])
            except Exception as err:  # noqa: BLE001 - reported as what is left, and why
                self.refusal = f"{type(err).__name__}: {first_line(err)}"
                log.warning("outbox entry %d (%s) was not sent: %s", self.queue[0].seq, self.queue[0].kind,
                            self.refusal)
                break
            self._sent()
            sent += 1
        return sent, len(self.queue)

    def _sent(self) -> None:
        """The head of the queue reached the server: drop it and record it on disk."""
        entry = self.queue.pop(0)
        atomic_write_text(json.dumps({"seq": entry.seq}), self.folder / SENT_FILE)

    # -- sender side

    def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        while not self.stopped:
            with self.condition:
                while not self.queue and not self.stopped:
                    self.condition.wait(timeout=1.0)
                if self.stopped:
                    return
                entry = self.queue[0]
            try:
                self.send(entry)
            except Exception as err:  # noqa: BLE001 - any failure means "not sent yet"
                self.failures += 1
                if self.failures == 1 or self.failures % 10 == 0:
                    log.warning("tracking server did not take entry %d (%s); retrying in %.0f s",
                                entry.seq, type(err).__name__, backoff)
                self.closing_event.wait(timeout=backoff)
                backoff = min(2 * backoff, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_FIRST_S
            with self.condition:
                self._sent()
                self.condition.notify_all()


def drain(run_dir: Path, send: Callable[[Entry], None]) -> tuple[int, int]:
    """Send what a run's outbox still holds, in order, now (`zerosum sync`, the end of a
    run); stops at the first failure. -> (sent, left)."""
    return Outbox(run_dir, send, start=False).send_now()
