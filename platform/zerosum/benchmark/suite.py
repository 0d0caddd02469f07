"""Benchmark suites and the published rows they are compared with, as strict pydantic models.

A suite file (`benchmarks/<name>.yaml`) holds one top-level `suite:` mapping:

    suite:
      protocol: {kind: mixture, data: ring8-pacgan, num_samples: 2500, source: "..."}
      seeds: [10, 11, ...]               # the seeds the table reports
      aims: {modes: 8, kl: 0.05}         # zerosum's aims, a line of the table (optional)
      rows:
        - name: gan                      # trained from a job file, as it is
          job: ../jobs/ring8-mlp.yaml
          set: [data.name=ring8-pacgan]
        - name: gan (tuned)              # the job with its campaign's champion settings
          job: ../jobs/ring8-mlp.yaml
          tune: campaigns/ring8-gan.yaml

Paths are relative to the suite file. `benchmarks/published.yaml` holds the published
rows, each with its paper, table and protocol notes; a suite shows those whose `suite`
is its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, PositiveInt, ValidationError, field_validator, model_validator

from zerosum.catalog import DATASET_NAMES
from zerosum.config import (
    _NAME_PATTERN,
    StrictModel,
    apply_overrides,
    format_validation_error,
    read_yaml,
)
from zerosum.errors import ConfigError

PROTOCOL_KINDS = ("mixture", "stacked-mnist", "fid", "classes")
# What each protocol reports, in table order, and which way is better.
PROTOCOL_COLUMNS = {
    "mixture": {"modes": "max", "hq_fraction": "max", "kl": "min"},
    "stacked-mnist": {"modes": "max", "kl": "min", "exp_entropy": "max"},
    "fid": {"fid": "min", "classifier_fid": "min"},
    "classes": {"classes": "max", "kl": "min"},
}
# The in-training metric that a row's seed campaign ranks its trials by (its champion is
# registered; the table itself reads every seed's final checkpoint, never the best one).
PROTOCOL_OBJECTIVES = {
    "mixture": ("modes", "eval/modes", "max"),
    "stacked-mnist": ("classes", "eval/classes_covered", "max"),
    "fid": ("fid", "eval/fid", "min"),
    "classes": ("classes", "eval/classes_covered", "max"),
}
PUBLISHED_FILE = "published.yaml"


class ProtocolSpec(StrictModel):
    """How every row (and the real data) is measured: the paper's own protocol."""

    kind: Literal[PROTOCOL_KINDS]
    data: Literal[DATASET_NAMES] = Field(description="the dataset the metrics refer to (and the real row draws)")
    num_samples: PositiveInt = Field(description="generated samples per (row, seed)")
    threshold_std: float = Field(3.0, gt=0, description="mixture: high quality within this many std of a mode")
    source: str = Field(min_length=1, description="the paper's code this follows: repository and file")


class RowSpec(StrictModel):
    name: str = Field(min_length=1)
    job: Path = Field(description="job spec, relative to the suite file")
    set: list[str] = Field(default_factory=list, description="--set overrides for this row's job")
    tune: Path | None = Field(None, description="campaign whose champion's settings this row trains with")
    note: str = ""


class SuiteSpec(StrictModel):
    name: str | None = Field(None, pattern=_NAME_PATTERN, description="default: the file's stem")
    description: str = ""
    protocol: ProtocolSpec
    seeds: list[int] = Field(min_length=1, description="the seeds the table reports")
    rows: list[RowSpec] = Field(min_length=1)
    real_row: bool = Field(True, description="a row for real data through the same protocol: the ceiling")
    max_concurrent: PositiveInt = Field(2, description="seeds trained side by side")
    aims: dict[str, float] = Field(default_factory=dict, description="zerosum's aim per column, a line of the "
                                   "table: at least it where more is better, at most where less is")

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds

    @model_validator(mode="after")
    def _row_names_unique(self) -> SuiteSpec:
        names = [row.name for row in self.rows]
        if len(set(names)) != len(names):
            raise ValueError(f"rows: names must be unique; got {names}")
        return self

    @model_validator(mode="after")
    def _aims_are_columns(self) -> SuiteSpec:
        columns = PROTOCOL_COLUMNS[self.protocol.kind]
        unknown = sorted(set(self.aims) - set(columns))
        if unknown:
            raise ValueError(f"aims: {unknown} are not columns of the {self.protocol.kind} protocol; "
                             f"its columns: {list(columns)}")
        return self


class SuiteSection(StrictModel):
    suite: SuiteSpec


class PublishedRow(StrictModel):
    """One row of a paper's table. A metric is a number or [mean, error] as printed."""

    id: str = Field(pattern=_NAME_PATTERN)
    suite: str
    method: str
    paper: str = Field(min_length=1)
    table: str = Field(min_length=1)
    source: str = Field(min_length=1, description="where the number is printed: arXiv id or URL")
    protocol: str = Field(min_length=1, description="how the paper measured it, where it differs")
    metrics: dict[str, float | list[float]]

    @field_validator("metrics")
    @classmethod
    def _mean_and_error(cls, metrics: dict) -> dict:
        for key, value in metrics.items():
            if isinstance(value, list) and len(value) != 2:
                raise ValueError(f"metrics.{key}: a number or [mean, error]; got {value}")
        return metrics


class PublishedFile(BaseModel):
    published: list[PublishedRow]


@dataclass
class Suite:
    """A validated suite: its spec, its file, and the published rows it is shown beside."""

    spec: SuiteSpec
    source: Path
    published: list[PublishedRow]

    @property
    def name(self) -> str:
        return self.spec.name or self.source.stem

    @property
    def columns(self) -> dict[str, str]:
        return PROTOCOL_COLUMNS[self.spec.protocol.kind]

    def path(self, relative: Path) -> Path:
        return (self.source.parent / relative).resolve()


def load_published(path: Path) -> list[PublishedRow]:
    """Every published row of `path`; ConfigError naming the file and field."""
    raw = read_yaml(path)
    try:
        rows = PublishedFile.model_validate(raw).published
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path), PublishedFile)) from None
    ids = [row.id for row in rows]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ConfigError(f"{path}: published ids must be unique; repeated: {', '.join(duplicated)}")
    return rows


def load_suite(path: str | Path, overrides: list[str] | None = None) -> Suite:
    """Read and validate a suite file; `--set suite.x=...` edits the suite. The rows' job
    files, campaign files and the published rows are checked to exist here, before anything
    trains. Raises ConfigError naming the file and field."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"{path}: no such suite file (suites are YAML files in benchmarks/)")
    raw = apply_overrides(read_yaml(path), overrides)
    try:
        spec = SuiteSection.model_validate(raw).suite
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path), SuiteSection)) from None
    suite = Suite(spec, path, [])
    for index, row in enumerate(spec.rows):
        for field, relative in (("job", row.job), ("tune", row.tune)):
            if relative is not None and not suite.path(relative).is_file():
                raise ConfigError(f"{path}: suite.rows.{index}.{field}: no file at {suite.path(relative)} "
                                  f"(paths are relative to the suite file)")
    published_path = path.parent / PUBLISHED_FILE
    if published_path.is_file():
        suite.published = [row for row in load_published(published_path) if row.suite == suite.name]
    return suite


def select_rows(suite: Suite, names: list[str]) -> Suite:
    """The suite with only the rows named (`zerosum benchmark --rows`), in the suite file's
    order: to run again one row whose job changed, without training the others. Raises
    ConfigError for a name the suite does not have, listing those it has."""
    known = [row.name for row in suite.spec.rows]
    for name in names:
        if name not in known:
            raise ConfigError(f"--rows: {suite.source.name} has no row {name!r}; its rows: "
                              + ", ".join(repr(k) for k in known))
    rows = [row for row in suite.spec.rows if row.name in names]
    return Suite(suite.spec.model_copy(update={"rows": rows}), suite.source, suite.published)


def split_overrides(overrides: list[str] | None) -> tuple[list[str], list[str]]:
    """(`suite.*` overrides, every other one): the first edit the suite, the rest every row's job."""
    suite_sets = [o for o in overrides or [] if o.strip().startswith("suite.")]
    return suite_sets, [o for o in overrides or [] if not o.strip().startswith("suite.")]
