"""Progress of a campaign on the driver: trials running, done, stopped, errored, best so far.

A Tune Callback (Tune calls it on the driver) that draws one rich progress line. Tune
pickles callbacks with the experiment, so the live display is rebuilt in `setup` and
left out of the pickle; counts come from the trial list each time, which stays right
after `--resume`.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from evals.stopping import is_better
from zerosum.tune.schema import OBJECTIVE_KEY


class CampaignProgress(Callback):
    def __init__(self, total_trials: int, total_rounds: int, mode: str):
        self.total_trials, self.total_rounds, self.mode = total_trials, total_rounds, mode
        self.best: tuple[float, str, int] | None = None
        self._progress = self._task = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_progress"] = state["_task"] = None
        return state

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        columns = [TextColumn("[bold]tune"), BarColumn(bar_width=16), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn()]
        self._progress = Progress(*columns, transient=False)
        self._task = self._progress.add_task("tune", total=total_num_samples or self.total_trials,
                                             status="starting trials")
        self._progress.start()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        score = result.get(OBJECTIVE_KEY)
        if score is not None and is_better(score, None if self.best is None else self.best[0], self.mode):
            self.best = (float(score), trial.trial_id, int(result.get("round", 0)))
        self._refresh(trials)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._refresh(trials)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._refresh(trials)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._refresh(trials)

    def on_experiment_end(self, trials, **info) -> None:
        self._refresh(trials)
        if self._progress is not None:
            self._progress.stop()

    def counts(self, trials) -> dict[str, int]:
        counts = {"running": 0, "done": 0, "stopped": 0, "errored": 0}
        for trial in trials:
            if trial.status == "RUNNING":
                counts["running"] += 1
            elif trial.status == "ERROR":
                counts["errored"] += 1
            elif trial.status == "TERMINATED":
                rounds = (trial.last_result or {}).get("round", 0)
                counts["stopped" if rounds < self.total_rounds else "done"] += 1
        return counts

    def _refresh(self, trials) -> None:
        if self._progress is None:
            return
        counts = self.counts(trials)
        status = " ".join(f"{k} {v}" for k, v in counts.items())
        if self.best is not None:
            status += f" | best {self.best[0]:.4g} ({self.best[1]}, round {self.best[2]})"
        finished = counts["done"] + counts["stopped"] + counts["errored"]
        self._progress.update(self._task, completed=finished, total=max(len(trials), self.total_trials),
                              status=status)
