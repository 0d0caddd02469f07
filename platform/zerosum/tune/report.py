"""A finished campaign as a table and plots: one row per trial, judged at its best report.

Rows come from the trials' own ledgers (`reports/<trial id>.jsonl`, one line per
report, written by the trial before Tune sees it); the champion is the best
checkpoint still on disk, found by the report.json each trial writes into it. The plots are the ones the campaign's parent run
gets in MLflow: objective against d_steps, objective over lr_d x lr_g, and the best
objective so far against wall time.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.stopping import is_better
from zerosum.pictures import pyplot
from zerosum.tune.campaign import Campaign
from zerosum.tune.schema import LEDGER_FOLDER, OBJECTIVE_KEY, best_entry, eval_metrics

COMPLETED, STOPPED, ERRORED = "completed", "stopped early", "error"
D_STEPS, LR_D, LR_G = "schedule.d_steps", "optim.d.lr", "optim.g.lr"


@dataclass
class TrialRow:
    """One trial, judged at its best report. params: hyperparameters there (PBT may have
    changed them); metrics: the eval/* values there; history: (unix time s, objective)."""

    trial_id: str
    status: str
    rounds: int
    best_objective: float | None
    best_round: int | None
    params: dict[str, Any]
    metrics: dict[str, float]
    wall_s: float
    run_id: str | None = None
    error: str | None = None
    history: list[tuple[float, float]] = field(default_factory=list)


def read_ledgers(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """{trial id: its reports in the order written} from `<campaign>/reports/*.jsonl`."""
    ledgers = {}
    for path in sorted((folder / LEDGER_FOLDER).glob("*.jsonl")):
        ledgers[path.stem] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return ledgers


def trial_row(campaign: Campaign, trial_id: str, entries: list[dict[str, Any]], error: str | None) -> TrialRow:
    """Summarise one trial's ledger: status, best report and its hyperparameters."""
    if not entries:
        return TrialRow(trial_id, ERRORED if error else STOPPED, 0, None, None, {}, {}, 0.0, error=error)
    mode = campaign.spec.objective.mode
    best = best_entry(entries, mode)
    rounds = int(entries[-1]["round"])
    status = ERRORED if error else (STOPPED if rounds < campaign.total_rounds else COMPLETED)
    evals = eval_metrics(best)
    history = [(e["time"], e[OBJECTIVE_KEY]) for e in entries]
    return TrialRow(trial_id, status, rounds, best[OBJECTIVE_KEY], best["round"], dict(best["params"]), evals,
                    entries[-1]["time"] - entries[0]["time"], None, error, history)


# --------------------------------------------------------------------------- table


def trials_csv(campaign: Campaign, rows: list[TrialRow]) -> str:
    """trials.csv: one line per trial, hyperparameters and eval metrics at its best report."""
    space = list(campaign.spec.search_space)
    eval_keys = sorted({k for row in rows for k in row.metrics})
    header = ["trial_id", "status", OBJECTIVE_KEY, "best_round", "rounds", "wall_s", *space, *eval_keys,
              "mlflow_run_id", "error"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.trial_id, row.status, fmt(row.best_objective), row.best_round, row.rounds,
                         f"{row.wall_s:.1f}", *(fmt(row.params.get(k)) for k in space),
                         *(fmt(row.metrics.get(k)) for k in eval_keys), row.run_id or "", row.error or ""])
    return buffer.getvalue()


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# --------------------------------------------------------------------------- plots


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def param_or_base(campaign: Campaign, row: TrialRow, key: str) -> float:
    """The trial's value of a path, or the base job's where the campaign does not search it."""
    if key in row.params and is_number(row.params[key]):
        return float(row.params[key])
    node: Any = campaign.base
    for part in key.split("."):
        node = getattr(node, part)
    return float(node)


def plot_objective_vs_d_steps(campaign: Campaign, rows: list[TrialRow]):
    """Each trial's best objective against its D updates per round."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for status, marker in ((COMPLETED, "o"), (STOPPED, "x")):
        chosen = [r for r in rows if r.status == status and r.best_objective is not None
                  and math.isfinite(r.best_objective)]
        axis.scatter([param_or_base(campaign, r, D_STEPS) for r in chosen], [r.best_objective for r in chosen],
                     marker=marker, label=status, alpha=0.8)
    axis.set_xticks(sorted({param_or_base(campaign, r, D_STEPS) for r in rows}))
    axis.set_xlabel("d_steps (D updates per round)")
    axis.set_ylabel(f"objective ({campaign.spec.objective.describe()})")
    axis.legend()
    figure.tight_layout()
    return figure


def plot_objective_over_lrs(campaign: Campaign, rows: list[TrialRow]):
    """Each trial at (lr_d, lr_g), coloured by its best objective."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 5))
    chosen = [r for r in rows if r.best_objective is not None and math.isfinite(r.best_objective)]
    points = axis.scatter([param_or_base(campaign, r, LR_D) for r in chosen],
                          [param_or_base(campaign, r, LR_G) for r in chosen],
                          c=[r.best_objective for r in chosen], cmap="viridis", s=60, edgecolors="black")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("lr_d")
    axis.set_ylabel("lr_g")
    figure.colorbar(points, ax=axis, label="objective")
    figure.tight_layout()
    return figure


def best_so_far(rows: list[TrialRow], mode: str, start_time: float) -> tuple[list[float], list[float]]:
    """(seconds since start, best objective so far) over all trials' reports, in time order."""
    events = sorted((t - start_time, s) for row in rows for t, s in row.history if math.isfinite(s))
    times, values, best = [], [], None
    for seconds, score in events:
        if is_better(score, best, mode):
            best = score
        times.append(seconds)
        values.append(best)
    return times, values


def plot_best_so_far(campaign: Campaign, rows: list[TrialRow], start_time: float):
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    times, values = best_so_far(rows, campaign.spec.objective.mode, start_time)
    axis.step(times, values, where="post")
    axis.set_xlabel("wall time since the campaign started (s)")
    axis.set_ylabel("best objective so far")
    figure.tight_layout()
    return figure


PLOTS = {
    "plots/objective_vs_d_steps.png": plot_objective_vs_d_steps,
    "plots/objective_over_lr_d_lr_g.png": plot_objective_over_lrs,
}
