"""Campaign specs: a base job, a search space over its fields, an objective, a scheduler.

A campaign file is YAML with a top-level `campaign:` mapping:

    campaign:
      base: ring8-mlp.yaml              # base job spec, relative to this file
      search_space:                     # dotted paths into the job schema
        schedule.d_steps: {choice: [1, 2, 3, 5]}
        optim.d.lr: {loguniform: [1.0e-5, 1.0e-2]}
        optim.*.betas: {choice: [[0.5, 0.999], [0.0, 0.9]]}   # '*': one value for g and d
      objective: {metric: eval/fid, mode: min}
      scheduler: {name: asha, grace_rounds: 500}
      num_samples: 12
    schedule: {max_rounds: 2000}        # other top-level keys override the base job

Without `base`, the file's other top-level keys are the base job itself, so one file
can be both `zerosum run` (which ignores `campaign:`) and `zerosum tune`.

Everything is checked before anything starts: a path the job schema does not have,
or a value the schema rejects (each choice, each bound), is a ConfigError that names
`campaign.search_space.<path>`. Pure Python: no Ray here (dry runs stay fast). The search paths themselves are
`zerosum.tune.space`; the schedulers `zerosum.tune.schedulers`.
"""

from __future__ import annotations

import copy
import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from zerosum.config import (
    JobSpec,
    apply_overrides,
    format_validation_error,
    job_to_dict,
    parse_override,
    read_yaml,
    set_path,
    validate_job,
)
from zerosum.errors import ConfigError
from zerosum.runtime import ray_units
from zerosum.tune.schema import (
    CONTINUOUS,
    METRIC_SOURCES,
    OBJECTIVE_KEY,
    AshaSpec,
    CampaignSection,
    CampaignSpec,
    FifoSpec,
    PbtSpec,
    ResourcesSpec,
    TrialSpec,
)
from zerosum.tune.space import resolve_search_path, set_targets


@dataclass
class Campaign:
    """A validated campaign: its spec, the resolved base job and where each search path goes."""

    spec: CampaignSpec
    base: JobSpec
    source: Path
    base_source: Path
    targets: dict[str, list[list[str]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name or self.source.stem

    @property
    def register_as(self) -> str:
        return self.spec.tracking.register_as or self.name

    @property
    def storage_path(self) -> Path:
        path = self.spec.tracking.storage_path
        return path.expanduser().resolve() if path is not None else self.base.tracking.storage_path

    @property
    def total_rounds(self) -> int:
        return self.base.schedule.total_rounds

    def grid_paths(self) -> list[str]:
        """Paths searched exhaustively: grid domains, and choices under algorithm grid."""
        kinds = ("grid", "choice") if self.spec.search.algorithm == "grid" else ("grid",)
        return [p for p, d in self.spec.search_space.items() if d.kind in kinds]

    def trial_count(self) -> int:
        """num_samples times the size of the grid (Ray Tune repeats the grid per sample)."""
        return self.spec.num_samples * math.prod(len(self.spec.search_space[p].values) for p in self.grid_paths())

    def trial_spec(self, params: dict[str, Any]) -> JobSpec:
        """The job one trial trains: the base job with the trial's params applied and the
        campaign's trial policy (`trial_policy`), validated once."""
        job = job_to_dict(self.base)
        for key, value in params.items():
            set_targets(job, self.targets[key], value)
        trial_policy(job, self.spec.trial, self.spec.resources)
        return validate_job(job, source=f"{self.source} (trial {params})", check_paths=False)

    def mutated_paths(self) -> list[str]:
        scheduler = self.spec.scheduler
        if not isinstance(scheduler, PbtSpec):
            return []
        return list(scheduler.mutate or self.spec.search_space)


# --------------------------------------------------------------------------- loading


def load_campaign(path: str | Path, overrides: list[str] | None = None, check_paths: bool = True) -> Campaign:
    """Read, merge and validate a campaign file; `--set campaign.x=...` edits the campaign,
    any other `--set a.b=...` edits the base job. Raises ConfigError naming the field."""
    path = Path(path)
    raw = read_yaml(path)
    campaign_sets = [o for o in overrides or [] if o.strip().startswith("campaign.")]
    job_sets = [o for o in overrides or [] if not o.strip().startswith("campaign.")]
    for text in campaign_sets:
        keys, value = parse_override(text)
        if keys[:2] == ["campaign", "search_space"] and len(keys) > 3:
            # Search paths are dotted themselves: campaign.search_space.optim.d.lr={choice: [...]}
            keys = keys[:2] + [".".join(keys[2:])]
        set_path(raw, keys, value)
    if not isinstance(raw.get("campaign"), dict):
        raise ConfigError(f"{path}: a campaign spec needs a top-level 'campaign:' mapping "
                          f"(job specs go to `zerosum run`)")
    spec = validate_campaign_section(raw["campaign"], str(path))
    base_raw, base_source = base_job_raw(path, raw, spec)
    base = validate_job(apply_overrides(base_raw, job_sets), source=f"{path} (base job {base_source})",
                        check_paths=check_paths)
    campaign = Campaign(spec, base, path, base_source)
    campaign.targets = {key: resolve_search_path(key, str(path)) for key in spec.search_space}
    check_search_values(campaign)
    check_campaign(campaign)
    return campaign


def validate_campaign_section(raw: dict[str, Any], source: str) -> CampaignSpec:
    try:
        return CampaignSection.model_validate({"campaign": raw}).campaign
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, CampaignSection)) from None


def base_job_raw(path: Path, raw: dict[str, Any], spec: CampaignSpec) -> tuple[dict[str, Any], Path]:
    """The base job's raw mapping: `campaign.base`'s file with this file's other keys merged
    over it, or (without `base`) this file's other keys."""
    local = {k: v for k, v in raw.items() if k != "campaign"}
    if spec.base is None:
        return local, path
    base_path = (path.parent / spec.base).resolve()
    if not base_path.is_file():
        raise ConfigError(f"{path}: campaign.base: no job spec at {base_path} (paths are relative to the campaign file)")
    base_raw = read_yaml(base_path)
    base_raw.pop("campaign", None)
    return deep_merge(base_raw, local), base_path


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of base with changes merged in: mappings merge key by key, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# --------------------------------------------------------------------------- search paths


def check_search_values(campaign: Campaign) -> None:
    """Substitute each candidate value into the base job and validate it: a value the
    job schema rejects is a ConfigError naming the search path."""
    base = job_to_dict(campaign.base)
    for key, domain in campaign.spec.search_space.items():
        for value in domain.candidates():
            job = copy.deepcopy(base)
            set_targets(job, campaign.targets[key], value)
            try:
                validate_job(job, source="base job", check_paths=False)
            except ConfigError as err:
                raise ConfigError(f"{campaign.source}: campaign.search_space.{key}: the job schema rejects "
                                  f"{value!r} ({domain.describe()}); {err}") from None


# --------------------------------------------------------------------------- consistency


def check_campaign(campaign: Campaign) -> None:
    """Cross-field rules: what the scheduler, searcher and trial mode need of each other."""
    spec, source = campaign.spec, campaign.source
    scheduler = spec.scheduler
    if not isinstance(scheduler, FifoSpec) and campaign.base.eval.every_rounds is None:
        raise ConfigError(f"{source}: eval.every_rounds: scheduler '{scheduler.name}' decides at evaluations, "
                          f"so the base job must evaluate every N rounds (set eval.every_rounds)")
    if isinstance(scheduler, PbtSpec):
        check_pbt(campaign, scheduler)
    if isinstance(scheduler, AshaSpec):
        top = scheduler.max_rounds or campaign.total_rounds
        grace = scheduler.grace_rounds or campaign.base.eval.every_rounds
        if grace > top:
            raise ConfigError(f"{source}: campaign.scheduler.grace_rounds: {grace} is beyond the last round ({top})")
    check_search_algorithm(campaign)
    check_objective(campaign)


def check_pbt(campaign: Campaign, scheduler: PbtSpec) -> None:
    source = campaign.source
    if campaign.spec.trial.mode != "single":
        raise ConfigError(f"{source}: campaign.trial.mode: PBT exchanges checkpoints between trials, "
                          f"which needs trial.mode 'single' (got '{campaign.spec.trial.mode}')")
    if campaign.spec.search.algorithm == "optuna":
        raise ConfigError(f"{source}: campaign.search.algorithm: PBT samples its own population; "
                          f"use 'random' or 'grid' with scheduler pbt")
    limit = campaign.spec.max_concurrent_trials
    if limit is not None and limit < campaign.trial_count():
        raise ConfigError(f"{source}: campaign.max_concurrent_trials: PBT needs its whole population of "
                          f"{campaign.trial_count()} trials at once (they take turns on the resources); "
                          f"leave it unset or at least num_samples")
    unknown = [p for p in scheduler.mutate or [] if p not in campaign.spec.search_space]
    if unknown:
        raise ConfigError(f"{source}: campaign.scheduler.mutate: {unknown} not in campaign.search_space "
                          f"(allowed: {', '.join(campaign.spec.search_space)})")
    for key in campaign.mutated_paths():
        fixed = [".".join(t) for t in campaign.targets[key] if not checkpoint_absorbs(t)]
        if fixed:
            raise ConfigError(f"{source}: campaign.search_space.{key}: PBT cannot mutate {fixed[0]}: a checkpoint "
                              f"built under one value cannot be restored under another (PBT may mutate "
                              f"{', '.join(PBT_MUTABLE)}); list the others outside scheduler.mutate")


# Fields a restored checkpoint takes on without a shape or state mismatch: the optimiser's
# hyperparameters (re-applied after a restore), the loss, the D:G schedule and EMA's decay.
PBT_MUTABLE = ("optim.*.lr", "optim.*.betas", "optim.*.weight_decay", "optim.*.momentum", "loss.*",
               "schedule.d_steps", "schedule.g_steps", "schedule.batch_size", "schedule.g_batch_size",
               "model.ema_decay", "model.codes.weight", "augment.probability")


def checkpoint_absorbs(path: list[str]) -> bool:
    """Can PBT change the field at `path` (['optim', 'd', 'lr']) between checkpoint and restore?"""
    for pattern in PBT_MUTABLE:
        parts = pattern.split(".")
        if len(parts) == len(path) and all(p in ("*", q) for p, q in zip(parts, path)):
            return True
    return False


def check_search_algorithm(campaign: Campaign) -> None:
    spec, source = campaign.spec, campaign.source
    algorithm = spec.search.algorithm
    if algorithm == "grid":
        continuous = [p for p, d in spec.search_space.items() if d.kind in CONTINUOUS]
        if continuous:
            raise ConfigError(f"{source}: campaign.search_space.{continuous[0]}: search.algorithm 'grid' needs "
                              f"choice or grid values, not {spec.search_space[continuous[0]].kind}")
    if algorithm != "optuna":
        return
    grid = [p for p, d in spec.search_space.items() if d.kind == "grid"]
    if grid:
        raise ConfigError(f"{source}: campaign.search_space.{grid[0]}: Optuna TPE does not take grid values; "
                          f"use choice")
    for path, domain in spec.search_space.items():
        if domain.kind == "choice" and any(isinstance(v, (list, dict)) for v in domain.values):
            raise ConfigError(f"{source}: campaign.search_space.{path}: Optuna choices must be scalars "
                              f"(numbers, strings, booleans)")
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError(f"{source}: campaign.search.algorithm: 'optuna' needs the optional extra: "
                          f"pip install 'zerosum[tune-optuna]' (or use 'random')")


def check_objective(campaign: Campaign) -> None:
    """Each objective key must be one a trial reports: an eval/* key of a metric switched on
    in the base job's eval.metrics, or a training metric (loss/d, d/real, ...; those vary by
    method, so any namespaced key passes). Otherwise the trials would fail at their first
    report, after Ray started."""
    metrics = campaign.base.eval.metrics
    reported = ", ".join(k for k, needed in METRIC_SOURCES.items() if needed in metrics) or "no eval/* keys"
    for key in campaign.spec.objective.terms():
        needed = METRIC_SOURCES.get(key)
        if needed is not None and needed not in metrics:
            raise ConfigError(f"{campaign.source}: campaign.objective: {key} comes from eval.metrics '{needed}', "
                              f"which the base job does not compute (eval.metrics: {metrics})")
        if needed is None and (key.startswith("eval/") or "/" not in key):
            raise ConfigError(f"{campaign.source}: campaign.objective: {key} is not a metric that trials report; "
                              f"the base job reports {reported} (eval.metrics: {metrics})")


# --------------------------------------------------------------------------- trials


def trial_policy(job: dict[str, Any], trial: TrialSpec, resources: ResourcesSpec) -> None:
    """Every runtime rule a trial's job follows, in one place (edits `job` in place).

    Trials checkpoint at every evaluation (schedulers decide there, and every report
    then carries the objective); ray-train trials keep every checkpoint so that the best
    one is still there for the champion; single-process trials have one worker.
    """
    every = job["eval"].get("every_rounds")
    if every:
        job["checkpoint"]["every_rounds"] = every
    job["scaling"]["use_gpu"] = resources.gpus > 0
    if trial.mode == "ray-train":
        job["scaling"].update(num_workers=trial.num_workers, cpus_per_worker=resources.cpus)
        job["checkpoint"]["keep"] = None
    else:
        job["scaling"]["num_workers"] = 1


def trial_holds(campaign: Campaign) -> dict[str, float]:
    """What one running trial holds of the cluster: its process's CPUs and GPUs (trial.mode
    single), or its Ray Train workers' (ray-train: the trial's own process asks for no CPU, and
    `trial_policy`'s use_gpu gives each worker a whole GPU)."""
    spec = campaign.spec
    if spec.trial.mode == "single":
        return {"CPU": spec.resources.cpus, "GPU": spec.resources.gpus}
    workers = spec.trial.num_workers
    return {"CPU": workers * spec.resources.cpus, "GPU": float(workers) if spec.resources.gpus > 0 else 0.0}


def trials_at_once(campaign: Campaign, cluster: dict[str, float]) -> tuple[int, str]:
    """(how many trials hold resources at the same time, which bound that is): the fewest of
    campaign.max_concurrent_trials, the campaign's trials, and those that fit on `cluster`
    (Ray's cluster_resources()): Tune starts a trial, and Ray Train a ray-train trial's
    workers, wherever their request fits, so an unset limit fills the cluster."""
    # In Ray's own units: 2 CPUs hold 20 trials of 0.1 CPU, where float division can land a hair under.
    limit, count = campaign.spec.max_concurrent_trials, campaign.trial_count()
    # A request below Ray's unit (cpus 0.00001) rounds to none and bounds nothing.
    fit = min((ray_units(cluster.get(name, 0.0)) // ray_units(amount)
               for name, amount in trial_holds(campaign).items() if ray_units(amount) > 0), default=count)
    bounds = ([(limit, f"campaign.max_concurrent_trials {limit}")] if limit else []) + [
        (count, f"{count} in the campaign"), (fit, f"{fit} that fit")]
    return min(bounds, key=lambda bound: bound[0])  # the first of equals: the field that set it


def campaign_streams(campaign: Campaign) -> bool:
    """Can a trial stream its data: the base job does, or the search space can turn it on."""
    return campaign.base.data.streaming or any(
        ["data", "streaming"] in campaign.targets[key] and any(value is True for value in domain.candidates())
        for key, domain in campaign.spec.search_space.items())


def campaign_cpu_problem(campaign: Campaign, cluster: dict[str, float]) -> str | None:
    """Why a streamed campaign's trials would leave Ray Data no CPU on `cluster` (Ray's
    cluster_resources()), or None: `streaming.spare_cpu_problem` for the trials that run at
    once, with what would work (fewer at once, fewer CPUs each, or more CPUs)."""
    # Imported here: streaming imports torch, and `zerosum tune --dry-run` stays without it.
    from zerosum.streaming import spare_cpu_problem

    if not campaign_streams(campaign):
        return None
    spec, cpus = campaign.spec, cluster.get("CPU", 0.0)
    per_trial = trial_holds(campaign)["CPU"]
    count, bound = trials_at_once(campaign, cluster)
    each = f"campaign.resources.cpus {spec.resources.cpus:g}"
    lower = "campaign.resources.cpus"
    if spec.trial.mode == "ray-train":
        each = f"campaign.trial.num_workers {spec.trial.num_workers} x {each}"
        lower = "campaign.trial.num_workers or campaign.resources.cpus"
    # The most trials at once that leave a whole CPU free.
    leaving_one = max(ray_units(cpus) - ray_units(1), 0) // max(ray_units(per_trial), 1)
    if leaving_one and isinstance(spec.scheduler, PbtSpec):
        # PBT runs its whole population at once (check_pbt): the population itself must shrink.
        remedy = f"Shrink PBT's population to {leaving_one} trials (campaign.num_samples), or lower {lower}"
    elif leaving_one:
        remedy = f"Set campaign.max_concurrent_trials to {leaving_one}, or lower {lower}"
    else:
        remedy = f"Lower {lower}"
    held = count * per_trial
    taken = f"1 trial at a time takes {held:g}" if count == 1 else f"{count} trials at a time take {held:g}"
    problem = spare_cpu_problem(cpus, held, "trials", f"{taken} ({bound} x {each})", f"{remedy}, or add CPUs")
    return problem and f"{campaign.source}: {problem}"


def describe_campaign(campaign: Campaign) -> str:
    """The resolved campaign for people (`zerosum tune --dry-run`)."""
    spec = campaign.spec
    scheduler = spec.scheduler.model_dump(exclude_none=True)
    width = max(len(k) for k in spec.search_space)
    lines = [
        f"campaign:    {campaign.name}" + (f"  ({spec.description})" if spec.description else ""),
        f"base job:    {campaign.base.name} ({campaign.base_source}), {campaign.total_rounds} rounds, "
        f"eval every {campaign.base.eval.every_rounds or campaign.total_rounds}",
        f"objective:   {spec.objective.describe()}  (reported as '{OBJECTIVE_KEY}')",
        f"scheduler:   {yaml.safe_dump(scheduler, default_flow_style=True, sort_keys=False, width=1000).strip()}",
        f"search:      {spec.search.algorithm} (seed {spec.search.seed}), num_samples {spec.num_samples}",
        f"trials:      {campaign.trial_count()}, at most {spec.max_concurrent_trials or 'unlimited'} at a time, "
        f"{spec.resources.cpus:g} CPU {spec.resources.gpus:g} GPU each, mode {spec.trial.mode}"
        + (f" x {spec.trial.num_workers} workers" if spec.trial.mode == "ray-train" else ""),
        f"tracking:    experiment '{campaign.base.experiment_name}', champion -> "
        f"models:/{campaign.register_as}@champion, folders under {campaign.storage_path}",
        "search space:",
    ]
    for key, domain in spec.search_space.items():
        where = ", ".join(".".join(t) for t in campaign.targets[key])
        shown = f"  -> {where}" if where != key else ""
        lines.append(f"  {key:<{width}}  {domain.describe()}{shown}")
    return "\n".join(lines)
