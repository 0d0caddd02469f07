"""What a suite run produced, as `results.json` holds it: rows, seeds, metrics, provenance."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_FILE, TABLE_MD, TABLE_CSV, PLOT_FILE = "results.json", "table.md", "table.csv", "plot.png"


@dataclass
class SeedResult:
    """One (row, seed): the protocol's columns and where they came from."""

    seed: int
    metrics: dict[str, float]
    train_s: float = 0.0
    score_s: float = 0.0
    trial_id: str | None = None
    run_id: str | None = None
    checkpoint: str | None = None


@dataclass
class RowResult:
    name: str
    kind: str  # "zerosum" or "real"
    seeds: list[SeedResult]
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class SuiteResult:
    suite: str
    folder: str
    protocol: dict[str, Any]
    rows: list[RowResult]
    meta: dict[str, Any]


def load_result(folder: Path) -> SuiteResult:
    """A suite folder's results.json, as run_suite wrote it."""
    return load_result_file(folder / RESULTS_FILE)


def load_result_file(path: Path) -> SuiteResult:
    """A results.json (a run folder's, or its copy kept as a record)."""
    raw = json.loads(path.read_text())
    rows = [RowResult(r["name"], r["kind"], [SeedResult(**s) for s in r["seeds"]], r["provenance"])
            for r in raw["rows"]]
    return SuiteResult(raw["suite"], raw["folder"], raw["protocol"], rows, raw["meta"])
