"""A suite run's table (Markdown and CSV, zerosum's rows beside the published ones), its plot
and its MLflow runs. `docs/results.md`, which merges the runs, is `zerosum.benchmark.page`."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

from zerosum.benchmark.protocols import mean_and_error
from zerosum.benchmark.results import PLOT_FILE, RESULTS_FILE, TABLE_CSV, TABLE_MD, RowResult, SuiteResult
from zerosum.benchmark.suite import PROTOCOL_COLUMNS, PublishedRow, Suite
from zerosum.files import atomic_write_text

# Fractions are printed as percentages, as the papers print them.
PERCENT_COLUMNS = {"hq_fraction"}


def fmt_number(value: float, column: str, digits: int = 3) -> str:
    """`digits` significant digits (percent columns: one decimal of a percent, or more for
    a value below 1%); '-' for an undefined value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column in PERCENT_COLUMNS:
        percent = 100 * value
        return f"{percent:.1f}%" if abs(percent) >= 1 or percent == 0 else f"{percent:.{digits}g}%"
    return f"{value:.{digits}g}" if abs(value) < 100 else f"{value:.0f}"


def fmt_cell(mean: float, error: float | None, column: str) -> str:
    """mean ± error, the error to 2 significant digits."""
    text = fmt_number(mean, column)
    if error is None or math.isnan(error) or text == "-":
        return text
    return f"{text} ± {fmt_number(error, column, digits=2)}"


def defined(values: list[float]) -> list[float]:
    """The values that are numbers: PacGAN's KL is undefined (nan) on a seed with no HQ sample."""
    return [v for v in values if not math.isnan(v)]


def row_summary(row: RowResult, columns: list[str]) -> dict[str, tuple[float, float]]:
    """{column: (mean, standard error)} over the row's seeds where the column is defined
    (nan, nan where it is defined on none)."""
    summary = {}
    for column in columns:
        values = defined([s.metrics[column] for s in row.seeds])
        summary[column] = mean_and_error(values) if values else (math.nan, math.nan)
    return summary


def summary_cell(row: RowResult, column: str, mean: float, error: float) -> str:
    """mean ± error, with `(k of n seeds)` where the column is undefined on some seeds."""
    count = len(defined([s.metrics[column] for s in row.seeds]))
    cell = fmt_cell(mean, error, column)
    return cell if count == len(row.seeds) or count == 0 else f"{cell} ({count} of {len(row.seeds)} seeds)"


def published_cell(row: PublishedRow, column: str) -> str:
    value = row.metrics.get(column)
    if value is None:
        return "-"
    if isinstance(value, list):
        return fmt_cell(value[0], value[1], column)
    return fmt_cell(value, None, column)


def aim_cell(aims: dict[str, float], column: str, direction: str) -> str:
    """`≥ 98.0%` where more is better, `≤ 0.05` where less is; '-' without an aim."""
    if column not in aims:
        return "-"
    return f"{'≥' if direction == 'max' else '≤'} {fmt_number(aims[column], column)}"


def table_rows(result: SuiteResult, published: list[PublishedRow],
               aims: dict[str, float] | None = None) -> list[dict[str, str]]:
    """One dict per table line: source, row, seeds, then the protocol's columns; the
    suite's aims (if it has any) last."""
    columns = list(PROTOCOL_COLUMNS[result.protocol["kind"]])
    lines = []
    for row in result.rows:
        summary = row_summary(row, columns)
        name = f"**{row.name}**" if row.kind == "zerosum" else row.name
        source = "zerosum" if row.kind == "zerosum" else "real data"
        line = {"source": source, "row": name, "seeds": str(len(row.seeds))}
        line |= {c: summary_cell(row, c, *summary[c]) for c in columns}
        lines.append(line)
    for row in published:
        line = {"source": f"{row.paper}, {row.table}", "row": row.method, "seeds": "-"}
        line |= {c: published_cell(row, c) for c in columns}
        lines.append(line)
    if aims:
        directions = PROTOCOL_COLUMNS[result.protocol["kind"]]
        lines.append({"source": "zerosum's aim", "row": "aim", "seeds": "-"}
                     | {c: aim_cell(aims, c, directions[c]) for c in columns})
    return lines


def markdown_table(lines: list[dict[str, str]]) -> str:
    keys = list(lines[0])
    out = ["| " + " | ".join(keys) + " |", "| " + " | ".join("---" for _ in keys) + " |"]
    out += ["| " + " | ".join(line[k] for k in keys) + " |" for line in lines]
    return "\n".join(out) + "\n"


def csv_table(result: SuiteResult, published: list[PublishedRow]) -> str:
    """Machine-readable: one line per (row, seed) with raw numbers, then the published rows."""
    columns = list(PROTOCOL_COLUMNS[result.protocol["kind"]])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["source", "row", "seed", *columns, "train_s", "score_s", "trial_id", "run_id"])
    for row in result.rows:
        for seed in row.seeds:
            writer.writerow([row.kind, row.name, seed.seed, *(seed.metrics[c] for c in columns),
                             f"{seed.train_s:.1f}", f"{seed.score_s:.1f}", seed.trial_id or "", seed.run_id or ""])
    for row in published:
        values = [row.metrics.get(c) for c in columns]
        writer.writerow([f"published: {row.paper}, {row.table}", row.method, "",
                         *(v[0] if isinstance(v, list) else ("" if v is None else v) for v in values), "", "", "", ""])
    return buffer.getvalue()


def provenance_lines(result: SuiteResult) -> list[str]:
    """Where each zerosum row's settings came from: its job, and its campaign and trial."""
    lines = []
    for row in result.rows:
        if row.kind != "zerosum":
            continue
        about = row.provenance
        text = f"- **{row.name}**: `{Path(about['job']).name}`" + (f" with {', '.join(about['set'])}" if about["set"] else "")
        if "campaign" in about:
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in about["params"].items())
            text += (f"; tuned by `{Path(about['campaign']).name}` on seeds {about['tuning_seeds']}"
                     + (f" ({about['tuning_wall_s'] / 60:.1f} min)" if "tuning_wall_s" in about else "")
                     + f": champion trial {about['champion_trial']} ({params})")
        fake_s = sum(s.score_s for s in row.seeds) / max(len(row.seeds), 1)
        train_s = sum(s.train_s for s in row.seeds) / max(len(row.seeds), 1)
        lines.append(text + f"; {train_s:.0f} s training and {fake_s:.0f} s scoring per seed")
    return lines


def run_line(meta: dict, lead: str = "Run") -> str:
    """`<lead> <date> at commit <c> on <machine>; seeds [...]; wall time N min; `<command>``."""
    when = time.strftime("%Y-%m-%d", time.gmtime(meta["started_at"]))
    return (f"{lead} {when} at commit `{meta['commit']}` on {meta['machine']}; seeds {meta['seeds']}; "
            f"wall time {meta['wall_s'] / 60:.1f} min" + (f"; `{meta['command']}`" if meta.get("command") else ""))


@dataclass
class MergedTable:
    """A table drawn from one or more runs of a suite under one protocol: the runs (newest
    first) and each row with the index of the run it comes from."""

    suite: str
    protocol: dict
    runs: list[SuiteResult]
    rows: list[tuple[RowResult, int]]


def unique_notes(runs: list[SuiteResult]) -> list[str]:
    """The runs' notes, each once, newest run's first."""
    seen: list[str] = []
    for run in runs:
        seen += [note for note in run.meta.get("notes", []) if note not in seen]
    return seen


def runs_head(table: MergedTable) -> list[str]:
    """One run: its line. Several: a list of them, numbered, each with the rows it gave."""
    if len(table.runs) == 1:
        return [run_line(table.runs[0].meta) + "."]
    items = [f"- {run_line(run.meta, lead=f'run {i + 1}: made')}; rows: "
             + ", ".join(row.name for row, index in table.rows if index == i and row.kind != "real") + "."
             for i, run in enumerate(table.runs)]
    return ["", *items, ""]


def merged_section(table: MergedTable, published: list[PublishedRow], heading: str,
                   aims: dict[str, float] | None = None) -> str:
    """The suite's Markdown: what, the runs, the table (a `run` column where there are several
    runs), where each zerosum row's settings came from."""
    newest = table.runs[0]
    combined = replace(newest, rows=[row for row, _ in table.rows])
    described = [newest.meta["description"], ""] if newest.meta.get("description") else []
    protocol = table.protocol
    head = [f"## {heading}", "", *described,
            f"Protocol: {protocol['kind']} on `{protocol['data']}`, {protocol['num_samples']} samples per seed; "
            f"follows {newest.meta['protocol_source']}.",
            *runs_head(table), *(f"Note: {note}." for note in unique_notes(table.runs))]
    lines = table_rows(combined, published, aims)
    provenance = provenance_lines(combined)
    if len(table.runs) > 1:
        # Table lines beyond the rows (published, aim) came from no run of zerosum's.
        run_of = [str(index + 1) for _, index in table.rows]
        lines = [line | {"run": run_of[i] if i < len(run_of) else "-"} for i, line in enumerate(lines)]
        zerosum_runs = [index for row, index in table.rows if row.kind == "zerosum"]
        provenance = [f"{line} (run {index + 1})" for line, index in zip(provenance, zerosum_runs)]
    return "\n".join([*head, ""]) + "\n" + markdown_table(lines) + "\n" + "\n".join(provenance) + "\n"


def suite_section(result: SuiteResult, published: list[PublishedRow], aims: dict[str, float] | None = None) -> str:
    """One run's Markdown (its folder's table.md): what, where, how long, the table, where
    the rows came from."""
    table = MergedTable(result.suite, result.protocol, [result], [(row, 0) for row in result.rows])
    return merged_section(table, published, result.suite, aims)


def plot_result(result: SuiteResult, published: list[PublishedRow]):
    """One panel per column: each row's mean ± error, published rows as diamonds."""
    from zerosum.pictures import pyplot

    plt = pyplot()
    columns = list(PROTOCOL_COLUMNS[result.protocol["kind"]])
    figure, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 0.5 * (len(result.rows) + len(published)) + 1.5))
    for axis, column in zip(axes, columns):
        names, means, errors = [], [], []
        for row in result.rows:
            mean, error = row_summary(row, [column])[column]
            names.append(row.name)
            means.append(mean)
            errors.append(0.0 if math.isnan(error) else error)
        axis.barh(names, means, xerr=errors, color=["grey" if r.kind == "real" else "tab:blue" for r in result.rows])
        shown = [(p.method, p.metrics[column]) for p in published if column in p.metrics]
        for method, value in shown:
            axis.plot(value[0] if isinstance(value, list) else value, method, "D", color="tab:orange")
        axis.set_title(column)
        axis.invert_yaxis()
    figure.tight_layout()
    return figure


def write_outputs(suite: Suite, result: SuiteResult, out: Path) -> None:
    """table.md, table.csv and plot.png in the suite folder; then the MLflow benchmark run."""
    atomic_write_text(suite_section(result, suite.published, suite.spec.aims), out / TABLE_MD)
    atomic_write_text(csv_table(result, suite.published), out / TABLE_CSV)
    figure = plot_result(result, suite.published)
    figure.savefig(out / PLOT_FILE, dpi=100)
    log_benchmark(suite, result, out, figure)


def log_benchmark(suite: Suite, result: SuiteResult, out: Path, figure) -> None:
    """A parent run `benchmark-<suite>` with the table, CSV, plot and suite file, and one
    nested run per (row, seed) with the protocol's columns and where the row came from."""
    from zerosum import tracking
    from zerosum.tracking import TrackedRun

    uri = tracking.resolve_tracking_uri()
    experiment = f"benchmark-{suite.name}"
    tags = {"zerosum.kind": "benchmark", "zerosum.benchmark": suite.name, "zerosum.benchmark_dir": str(out)}
    params = {"protocol." + k: v for k, v in result.protocol.items()} | {"seeds": result.meta["seeds"],
                                                                         "commit": result.meta["commit"]}
    parent = TrackedRun.start(uri, experiment, out.name, params, (out / "suite.yaml").read_text(), tags=tags)
    for row in result.rows:
        for seed in row.seeds:
            about = {"row": row.name, "kind": row.kind, "seed": seed.seed, "trial_id": seed.trial_id,
                     "train_run_id": seed.run_id, "checkpoint": seed.checkpoint}
            about |= {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.provenance.items()}
            child = TrackedRun.start(uri, experiment, f"{row.name} seed {seed.seed}", about, "",
                                     tags={**tags, "zerosum.row": row.name}, parent=parent)
            child.log_metrics(seed.metrics | {"train_s": seed.train_s, "score_s": seed.score_s}, step=0)
            child.end()
    for name in (TABLE_MD, TABLE_CSV, RESULTS_FILE):
        parent.log_artifact(out / name)
    parent.log_figure(figure, PLOT_FILE)
    parent.end()
    result.meta["mlflow_run"] = parent.run_id
