"""`docs/results.md`, rebuilt from the benchmark records kept in the repository.

A *record* is one suite run's `results.json`, kept as `benchmarks/results/<suite>-<time>.json`.
Run folders hold checkpoints and stay on the machine that ran them; the records are small,
so the page can be rebuilt from a clone. `zerosum benchmark --report` copies the finished
runs under `--out` in as records, then writes the page:

- one section per suite (per protocol, if a suite's protocol was changed between runs);
- in it, every row once, from the newest run that trained it, so a run of one row
  (`--rows NAME`) replaces that row and leaves the others standing; a row trained with the
  command's `--set` is a row of its own (`dcgan (with schedule.max_rounds=200)`);
- the runs a table draws on, each with its commit, machine, seeds, wall time and command.

Tables from before records were kept are in `benchmarks/results/earlier.md`, written by
hand from the page of the time; the page carries each of its `## <suite>...` sections as
written, after that suite's own.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from zerosum.benchmark.results import RESULTS_FILE, RowResult, SuiteResult, load_result_file
from zerosum.benchmark.table import MergedTable, merged_section
from zerosum.errors import ConfigError
from zerosum.files import atomic_write_text

if TYPE_CHECKING:
    from zerosum.benchmark.suite import Suite

RECORDS_FOLDER, EARLIER_FILE = "results", "earlier.md"
RESULTS_PAGE_HEAD = """# Benchmark results

zerosum's rows beside the published ones, under each paper's protocol. Written by
`zerosum benchmark --report` from the records in `benchmarks/results/` (one `results.json`
per suite run): each table shows every row from the newest run that trained it, and says
where each run was made, by which command, and how long it took. zerosum's rows are
**bold**; `real data` is the training data through the same protocol (the ceiling);
published rows are as printed, with their source. Means are over the reported seeds,
± one standard error.
"""


# --------------------------------------------------------------------------- records


def import_runs(out_root: Path, records: Path) -> list[Path]:
    """Copy every finished suite run under out_root into `records` as `<run folder>.json`,
    unless a record of that name is there already; the records written."""
    added = []
    for path in sorted(out_root.glob(f"*/{RESULTS_FILE}")):
        target = records / f"{path.parent.name}.json"
        if not target.exists():
            records.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path.read_text(), target)
            added.append(target)
    return added


def load_records(records: Path) -> list[SuiteResult]:
    """Every record in the folder, oldest first."""
    results = []
    for path in sorted(records.glob("*.json")):
        try:
            results.append(load_result_file(path))
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{path}: not a benchmark record, as `zerosum benchmark` writes results.json "
                              f"({type(error).__name__}: {error})") from None
    return sorted(results, key=lambda r: r.meta["started_at"])


# --------------------------------------------------------------------------- merging runs


def row_label(row: RowResult) -> str:
    """The row's name on the page: with the command's --set where the run had one, since
    `dcgan` trained 200 rounds by `--set schedule.max_rounds=200` is not the suite's dcgan."""
    overrides = row.provenance.get("command_set") or []
    return f"{row.name} (with {', '.join(overrides)})" if overrides else row.name


def merge_runs(runs: list[SuiteResult], order: list[str]) -> MergedTable:
    """One table from runs of one suite under one protocol: each row (by its label) from the
    newest run that has it. The real row comes first, then the rows in `order` (the suite
    file's), then the others, newest run first."""
    newest_first = sorted(runs, key=lambda r: r.meta["started_at"], reverse=True)
    chosen: dict[str, tuple[RowResult, int]] = {}
    for index, run in enumerate(newest_first):
        for row in run.rows:
            chosen.setdefault(row_label(row), (replace(row, name=row_label(row)), index))
    rank = {name: i for i, name in enumerate(order)}

    def place(name: str) -> tuple[int, int, int]:
        row, run_index = chosen[name]
        return (0 if row.kind == "real" else 1, rank.get(name, len(rank)), run_index)

    names = sorted(chosen, key=place)
    used = sorted({chosen[name][1] for name in names})
    renumber = {old: new for new, old in enumerate(used)}
    rows = [(chosen[name][0], renumber[chosen[name][1]]) for name in names]
    return MergedTable(newest_first[0].suite, newest_first[0].protocol, [newest_first[i] for i in used], rows)


def protocol_groups(results: list[SuiteResult], main: dict | None) -> list[list[SuiteResult]]:
    """One suite's runs grouped by protocol: the group under `main` (the suite file's
    protocol) first, then the others, the group of the newest run first."""
    groups: dict[str, list[SuiteResult]] = {}
    for run in sorted(results, key=lambda r: r.meta["started_at"], reverse=True):
        groups.setdefault(repr(sorted(run.protocol.items())), []).append(run)
    return sorted(groups.values(), key=lambda group: group[0].protocol != main)


def protocol_difference(protocol: dict, main: dict) -> str:
    """`num_samples 500` for the protocol fields where `protocol` differs from `main`."""
    return ", ".join(f"{key} {protocol.get(key)}" for key in sorted(set(protocol) | set(main))
                     if key != "source" and protocol.get(key) != main.get(key))


# --------------------------------------------------------------------------- the page


def earlier_sections(text: str) -> dict[str, list[str]]:
    """{suite: its sections} of earlier.md: each `## <suite>` or `## <suite>: ...` heading
    and what follows it up to the next `## `."""
    sections: dict[str, list[str]] = {}
    for block in re.split(r"(?m)^(?=## )", text):
        if block.startswith("## "):
            suite = re.split(r"[:(]", block[3:].splitlines()[0])[0].strip()
            sections.setdefault(suite, []).append(block.rstrip("\n") + "\n")
    return sections


def is_suite_file(path: Path) -> bool:
    """A YAML file with a top-level `suite:` mapping (not a job, campaign or published.yaml)."""
    from zerosum.config import read_yaml

    try:
        return isinstance(read_yaml(path).get("suite"), dict)
    except ConfigError:
        return False


def suite_file(suites_folder: Path, suite: str) -> Suite | None:
    """The suite's file as it is now (its row order and aims), or None if there is none any more."""
    from zerosum.benchmark.suite import load_suite

    path = suites_folder / f"{suite}.yaml"
    try:
        return load_suite(path) if path.is_file() else None
    except ConfigError:
        return None


def results_page(records: list[SuiteResult], suites_folder: Path, earlier: str = "") -> str:
    """docs/results.md: per suite, its merged tables with the published rows of its suite
    file, then its earlier sections; then the suites with neither."""
    from zerosum.benchmark.suite import PUBLISHED_FILE, load_published

    published_path = suites_folder / PUBLISHED_FILE
    published = load_published(published_path) if published_path.is_file() else []
    by_suite: dict[str, list[SuiteResult]] = {}
    for record in records:
        by_suite.setdefault(record.suite, []).append(record)
    kept = earlier_sections(earlier)
    sections = []
    for suite in sorted(set(by_suite) | set(kept)):
        shown = [p for p in published if p.suite == suite]
        current = suite_file(suites_folder, suite)
        order = [row.name for row in current.spec.rows] if current else []
        protocol = current.spec.protocol.model_dump(mode="json") if current else None
        groups = protocol_groups(by_suite.get(suite, []), protocol)
        main = protocol if protocol is not None else groups[0][0].protocol if groups else {}
        for group in groups:
            table = merge_runs(group, order)
            difference = protocol_difference(table.protocol, main)
            # Aims hold under the suite file's protocol only: a smoke run's 500 samples are not held to them.
            aims = current.spec.aims if current and table.protocol == protocol else None
            sections.append(merged_section(table, shown, f"{suite} ({difference})" if difference else suite, aims))
        sections += kept.get(suite, [])
    missing = sorted(p.stem for p in suites_folder.glob("*.yaml")
                     if p.stem not in by_suite and p.stem not in kept and is_suite_file(p))
    if missing:
        sections.append("## Not run here yet\n\n" + "\n".join(f"- `{suites_folder.name}/{name}.yaml`" for name in missing)
                        + "\n")
    return RESULTS_PAGE_HEAD + "\n" + "\n".join(sections)
