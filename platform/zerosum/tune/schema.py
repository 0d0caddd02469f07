"""The campaign section of a campaign file, as strict pydantic models.

`zerosum.tune.campaign` loads a file with these and checks them against the job schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from zerosum.config import _NAME_PATTERN, StrictModel

CONTINUOUS = ("uniform", "loguniform", "randint")
# Which `eval.metrics` entry produces which reported key (for objective checks).
METRIC_SOURCES = {
    "eval/modes": "modes", "eval/hq_fraction": "modes", "eval/mode_kl": "modes", "eval/fid": "fid", "eval/kid": "kid",
    "eval/kid_std": "kid", "eval/mmd2": "mmd", "eval/mmd_pvalue": "mmd", "eval/classes_covered": "classes",
    "eval/class_kl": "classes", "eval/psnr": "psnr", "eval/ssim": "ssim", "eval/accuracy": "accuracy",
}
OBJECTIVE_KEY = "objective"


def best_entry(entries, mode: str) -> dict[str, Any] | None:
    """The report with the best objective under `mode` (the first of equals), or None.
    entries: report dicts, as ledgers and checkpoint stamps hold them."""
    from evals.stopping import is_better

    best = None
    for entry in entries:
        if best is None or is_better(entry[OBJECTIVE_KEY], best[OBJECTIVE_KEY], mode):
            best = entry
    return best


def eval_metrics(entry: dict[str, Any]) -> dict[str, float]:
    """The `eval/*` metrics of one report."""
    return {k: v for k, v in entry["metrics"].items() if k.startswith("eval/")}
# Inside a campaign folder: the trials' ledgers, stamps in checkpoints, Ray Train trial runs.
LEDGER_FOLDER, REPORT_FILE, TRAIN_FOLDER = "reports", "report.json", "train"
# A Ray Train trial's reporter keeps its outbox here, inside the trial's train folder.
REPORTER_FOLDER = "objective"
# The table's rows as the campaign's end saw them (for `zerosum sync`, if it could not log them).
ROWS_FILE = "trials.json"


class DomainSpec(StrictModel):
    """One search dimension, written `{kind: values}` in YAML.

    choice/grid: a non-empty list of values (grid: every value, in every sample);
    uniform/loguniform: [low, high] floats (loguniform: low > 0);
    randint: [low, high) integers (high exclusive, as in Ray Tune).
    """

    kind: Literal["choice", "grid", "uniform", "loguniform", "randint"]
    values: list[Any]

    @model_validator(mode="before")
    @classmethod
    def _from_one_key(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and len(raw) == 1 and "kind" not in raw:
            ((kind, values),) = raw.items()
            return {"kind": kind, "values": values}
        if isinstance(raw, DomainSpec) or (isinstance(raw, dict) and "kind" in raw):
            return raw
        raise ValueError("expected one of {choice: [...]}, {grid: [...]}, {uniform: [low, high]}, "
                         "{loguniform: [low, high]}, {randint: [low, high]}")

    @model_validator(mode="after")
    def _values_fit_kind(self) -> DomainSpec:
        if self.kind in ("choice", "grid"):
            if not self.values:
                raise ValueError(f"{self.kind}: needs at least one value")
            return self
        if len(self.values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                            for v in self.values):
            raise ValueError(f"{self.kind}: expected [low, high] numbers, got {self.values}")
        low, high = self.values
        if not low < high:
            raise ValueError(f"{self.kind}: low must be < high, got [{low}, {high}]")
        if self.kind == "loguniform" and low <= 0:
            raise ValueError(f"loguniform: low must be > 0, got {low}")
        if self.kind == "randint" and not (isinstance(low, int) and isinstance(high, int)):
            raise ValueError(f"randint: bounds must be integers, got [{low}, {high}]")
        return self

    def candidates(self) -> list[Any]:
        """Values to check against the job schema: every choice, or both bounds."""
        if self.kind == "randint":
            return [self.values[0], self.values[1] - 1]
        return list(self.values)

    def describe(self) -> str:
        return f"{self.kind} {self.values}"


class ObjectiveSpec(StrictModel):
    """What a trial is judged by: one reported metric, or a weighted sum of several
    (e.g. eval/modes + eval/hq_fraction: modes first, quality breaks ties)."""

    metric: str | None = None
    weights: dict[str, float] | None = None
    mode: Literal["min", "max"]

    @model_validator(mode="after")
    def _one_of(self) -> ObjectiveSpec:
        if (self.metric is None) == (self.weights is None):
            raise ValueError("set exactly one of objective.metric and objective.weights")
        if self.weights is not None and not self.weights:
            raise ValueError("objective.weights: needs at least one metric")
        return self

    def terms(self) -> dict[str, float]:
        return {self.metric: 1.0} if self.metric is not None else dict(self.weights)

    def describe(self) -> str:
        terms = " + ".join(k if w == 1.0 else f"{w:g} * {k}" for k, w in self.terms().items())
        return f"{self.mode} {terms}"


class FifoSpec(StrictModel):
    name: Literal["fifo"] = "fifo"


class AshaSpec(StrictModel):
    """Asynchronous successive halving over rounds (Li et al. 2020)."""

    name: Literal["asha"]
    max_rounds: PositiveInt | None = Field(None, description="top rung; default the base's total rounds")
    grace_rounds: PositiveInt | None = Field(None, description="first rung; default eval.every_rounds")
    reduction_factor: float = Field(2.0, gt=1.0)
    brackets: PositiveInt = 1


class PbtSpec(StrictModel):
    """Population based training (Jaderberg et al. 2017): exploit a better trial's
    checkpoint, explore by perturbing its hyperparameters."""

    name: Literal["pbt"]
    perturbation_interval_rounds: PositiveInt
    burn_in_rounds: NonNegativeInt = 0
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5)
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)
    mutate: list[str] | None = Field(None, description="search-space paths PBT perturbs; default all")
    synch: bool = Field(True, description="perturb when every trial reached the interval; trials take "
                                          "turns when the population outgrows the resources")


SchedulerSpec = Annotated[FifoSpec | AshaSpec | PbtSpec, Field(discriminator="name")]


class SearchSpec(StrictModel):
    algorithm: Literal["random", "grid", "optuna"] = "random"
    seed: int | None = Field(0, description="random sampling seed; none = a fresh one each run")


class ResourcesSpec(StrictModel):
    """Per trial process (trial.mode single) or per Ray Train worker (ray-train)."""

    cpus: PositiveFloat = 1.0
    gpus: NonNegativeFloat = 0.0


class TrialSpec(StrictModel):
    mode: Literal["single", "ray-train"] = "single"
    num_workers: PositiveInt = Field(1, description="ray-train: Ray Train workers per trial")


class CampaignTrackingSpec(StrictModel):
    register_as: str | None = Field(None, pattern=_NAME_PATTERN,
                                    description="registered model for the champion; default the campaign name")
    storage_path: Path | None = Field(None, description="campaign folders; default the base job's")


class CampaignSpec(StrictModel):
    name: str | None = Field(None, pattern=_NAME_PATTERN, description="default: the file's stem")
    description: str = ""
    base: Path | None = Field(None, description="base job spec, relative to the campaign file")
    search_space: dict[str, DomainSpec]
    objective: ObjectiveSpec
    scheduler: SchedulerSpec = Field(default_factory=FifoSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    num_samples: PositiveInt = 1
    max_concurrent_trials: PositiveInt | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    trial: TrialSpec = Field(default_factory=TrialSpec)
    tracking: CampaignTrackingSpec = Field(default_factory=CampaignTrackingSpec)

    @field_validator("search_space")
    @classmethod
    def _dotted_paths(cls, space: dict[str, DomainSpec]) -> dict[str, DomainSpec]:
        """At least one path, each dotted like optim.d.lr."""
        if not space:
            # pydantic's min_length would say "Dictionary should have at least 1 item".
            raise ValueError("needs at least 1 path to search, e.g. optim.d.lr: {loguniform: [1.0e-5, 1.0e-2]}")
        for key in space:
            if not key or any(not part for part in key.split(".")):
                raise ValueError(f"'{key}' is not a dotted path like optim.d.lr")
        return space


class CampaignSection(StrictModel):
    campaign: CampaignSpec
