"""Progress for long work: a rich bar fed by the run's MLflow metrics.

Ray Train reports go to its controller, not to the driver, so the driver polls
the MLflow store (one cheap query) for the newest logged round.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

POLL_SECONDS = 2.0


def latest_round(run) -> tuple[int, dict[str, float]]:
    """(newest step of loss/d or loss/g, the run's latest metric values) of a TrackedRun.
    Both, because a method without a critic (GMMN) logs no loss/d."""
    return max(run.last_metric_step("loss/d"), run.last_metric_step("loss/g"), 0), run.latest_metrics()


# The eval metrics the bar shows, by their short names: the ones that say how close G is.
SHOWN_EVALS = {"eval/fid": "fid", "eval/kid": "kid", "eval/mmd_pvalue": "mmd p", "eval/modes": "modes",
               "eval/hq_fraction": "hq", "eval/classes_covered": "classes", "eval/class_kl": "kl"}


def status_line(metrics: dict[str, float]) -> str:
    """The latest losses, then the latest eval metrics: `d 1.301 g 0.702 | fid 12.4 classes 10`."""
    losses = " ".join(f"{k[5:]} {metrics[k]:.3f}" for k in ("loss/d", "loss/g") if k in metrics)
    evals = " ".join(f"{short} {metrics[key]:.3g}" for key, short in SHOWN_EVALS.items() if key in metrics)
    return f"{losses} | {evals}" if evals else losses


@contextlib.contextmanager
def watch_run(run, total_rounds: int) -> Iterator[None]:
    """Show rounds done, loss/d and loss/g while the body (trainer.fit) runs."""
    stop = threading.Event()
    # Narrow columns: the whole line fits 80 characters, the width rich assumes off a terminal.
    columns = [BarColumn(bar_width=8), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("{task.fields[status]}")]
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("train", total=total_rounds, status="starting Ray")

        def poll() -> None:
            while not stop.wait(POLL_SECONDS):
                try:
                    done, metrics = latest_round(run)
                except Exception:  # the store may be busy; progress is best-effort
                    continue
                status = status_line(metrics)
                bar.update(task, completed=done, status=status)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=POLL_SECONDS * 2)
