"""The outbox queue on its own: order, retries, a restart, a journal cut short."""

from __future__ import annotations

import threading

import numpy as np

from zerosum import outbox
from zerosum.outbox import Outbox, drain, read_journal


class FlakyServer:
    """Refuses the first `refusals` sends, then records every entry it is sent."""

    def __init__(self, refusals: int = 0):
        self.refusals, self.received = refusals, []
        self.lock = threading.Lock()

    def __call__(self, entry) -> None:
        with self.lock:
            if self.refusals > 0:
                self.refusals -= 1
                raise ConnectionError("server away")
            self.received.append(entry)


def test_entries_arrive_once_in_order_through_refusals(tmp_path, monkeypatch):
    monkeypatch.setattr(outbox, "BACKOFF_FIRST_S", 0.01)
    server = FlakyServer(refusals=5)
    box = Outbox(tmp_path, server)
    for step in range(1, 21):
        box.put("metrics", {"loss/d": float(step)}, step)
    box.put("tags", {"zerosum.note": "x"})
    assert box.close(timeout_s=30) == 0
    assert [e.seq for e in server.received] == list(range(1, 22))
    assert [e.step for e in server.received if e.kind == "metrics"] == list(range(1, 21))
    assert box.high_water == {"loss/d": 20} and box.tag_keys == {"zerosum.note"}


def test_a_restarted_outbox_sends_only_what_was_not_sent(tmp_path):
    away = FlakyServer(refusals=10**9)
    first = Outbox(tmp_path, away, start=False)  # a rank 0 that died before sending anything
    for step in (10, 20, 30):
        first.put("metrics", {"loss/d": 1.0}, step)
    server = FlakyServer()
    assert drain(tmp_path, server) == (3, 0)
    assert drain(tmp_path, server) == (0, 0)  # sent.json remembers
    assert [e.step for e in server.received] == [10, 20, 30]
    second = Outbox(tmp_path, server)
    assert second.next_seq == 4 and second.pending() == 0 and second.high_water == {"loss/d": 30}


def test_a_line_cut_short_by_a_kill_is_dropped_and_does_not_swallow_the_next(tmp_path):
    first = Outbox(tmp_path, FlakyServer(), start=False)
    first.put("metrics", {"loss/d": 1.0}, 10)
    journal = tmp_path / outbox.OUTBOX_FOLDER / outbox.JOURNAL_FILE
    with journal.open("a") as handle:
        handle.write('{"seq": 2, "kind": "metr')  # the writer was killed mid-line
    second = Outbox(tmp_path, FlakyServer(), start=False)
    second.put("metrics", {"loss/d": 2.0}, 20)
    assert [(e.seq, e.step) for e in read_journal(journal.parent)] == [(1, 10), (2, 20)]


def test_images_beyond_the_budget_are_dropped_and_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(outbox, "IMAGE_BUDGET_BYTES", 10)  # less than one PNG: the second is over
    box = Outbox(tmp_path, FlakyServer(), start=False)
    grid = np.zeros((8, 8, 3), dtype=np.uint8)
    box.put("image", {"key": "samples"}, 1, image=grid)
    box.put("image", {"key": "samples"}, 2, image=grid)
    assert box.dropped_images == 1 and box.pending() == 1


def test_closing_stops_the_sender_and_leaves_the_rest_for_the_next_outbox(tmp_path, monkeypatch):
    monkeypatch.setattr(outbox, "BACKOFF_FIRST_S", 0.01)
    away = FlakyServer(refusals=10**9)
    box = Outbox(tmp_path, away)
    box.put("metrics", {"loss/d": 1.0}, 10)
    assert box.close(timeout_s=0.2) == 1
    assert not box.thread.is_alive()  # a restarted trial's outbox must not race this sender
    server = FlakyServer()
    assert drain(tmp_path, server) == (1, 0) and [e.step for e in server.received] == [10]


def test_grids_dropped_over_the_budget_are_a_warning_of_the_run(tmp_path, monkeypatch):
    from zerosum.tracking import WARNING_TAG, RunLogger

    monkeypatch.setattr(outbox, "IMAGE_BUDGET_BYTES", 10)
    box = Outbox(tmp_path, FlakyServer(), start=False)
    logger = RunLogger(run=None, outbox=box)
    grid = np.zeros((8, 8, 3), dtype=np.uint8)
    logger.log_samples(grid, 1)
    logger.log_samples(grid, 2)
    logger.close(timeout_s=0)
    (tags,) = [e.data for e in read_journal(box.folder) if e.kind == "tags"]
    assert tags == {f"{WARNING_TAG}.1": "1 sample grids were not kept: the outbox's images reached 0 MiB"}
