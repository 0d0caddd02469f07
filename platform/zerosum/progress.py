"""Progress for long work: a rich bar fed by the run's MLflow metrics.

Ray Train reports go to its controller, not to the driver, so the driver polls
the MLflow store (one cheap query) for the newest logged round.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

POLL_SECONDS = 2.0


def latest_round(tracking_uri: str, run_id: str) -> tuple[int, dict[str, float]]:
    """(newest step of loss/d, the run's latest metric values)."""
    from zerosum.tracking import last_metric_step, latest_metrics

    return max(last_metric_step(tracking_uri, run_id, "loss/d"), 0), latest_metrics(tracking_uri, run_id)


@contextlib.contextmanager
def watch_run(tracking_uri: str, run_id: str, total_rounds: int) -> Iterator[None]:
    """Show rounds done, loss/d and loss/g while the body (trainer.fit) runs."""
    stop = threading.Event()
    columns = [TextColumn("[bold]training"), BarColumn(), TextColumn("{task.completed}/{task.total} rounds"),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("train", total=total_rounds, status="starting Ray")

        def poll() -> None:
            while not stop.wait(POLL_SECONDS):
                try:
                    done, metrics = latest_round(tracking_uri, run_id)
                except Exception:  # the store may be busy; progress is best-effort
                    continue
                status = "  ".join(f"{k} {metrics[k]:.3f}" for k in ("loss/d", "loss/g") if k in metrics)
                bar.update(task, completed=done, status=status)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=POLL_SECONDS * 2)
