"""`zerosum benchmark SUITE`: every row trained on every seed, measured by the suite's protocol.

For each row:

1. A row with `tune:` first gets its settings from a zerosum campaign (`zerosum tune` on the
   campaign file). Its trials must use seeds the table does not report. A finished campaign
   of the same resolved file under `<out>/tuning/` (`--out`, beside the suite folders) is
   reused, so that a table can be rebuilt without tuning again. The row trains the champion's settings (its seed dropped).
2. The row's job is trained once per reported seed, as a Ray Tune campaign over
   `schedule.seed` (a grid): Ray runs the seeds side by side, each trial is a nested MLflow
   run of the row's campaign run, and its checkpoints stay on disk.
3. Each seed's *final* checkpoint (never its best one: choosing by the metric would bias the
   table) is sampled with the protocol's sample count and scored.

The real row puts training reals through the same protocol, once per seed. The suite's
folder `<out>/<suite>-<time>/` then holds `table.md`, `table.csv`, `results.json`,
`plot.png`; an MLflow parent run holds them too, with one nested run per (row, seed).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import yaml

from zerosum.benchmark.protocols import protocol_notes, protocol_scores, real_samples
from zerosum.benchmark.results import RESULTS_FILE, RowResult, SeedResult, SuiteResult
from zerosum.benchmark.suite import PROTOCOL_OBJECTIVES, RowSpec, Suite
from zerosum.config import JobSpec, apply_overrides, load_job, read_yaml, validate_job
from zerosum.errors import ConfigError
from zerosum.files import atomic_write_text
from zerosum.records import FolderRecord, new_folder

log = logging.getLogger(__name__)

TUNING_FOLDER, SEED_PATH = "tuning", "schedule.seed"
REAL_ROW = "real data"


def slug(text: str) -> str:
    """A row name as a folder and MLflow name: `gan (tuned)` -> `gan-tuned`."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "row"


# --------------------------------------------------------------------------- tuning


def campaign_seeds(campaign) -> set[int]:
    """The seeds a campaign's trials train with: the searched values of schedule.seed, else
    the base job's one seed (randint seeds are every integer in [low, high))."""
    domain = campaign.spec.search_space.get(SEED_PATH)
    if domain is None:
        return {campaign.base.schedule.seed}
    if domain.kind == "randint":
        return set(range(domain.values[0], domain.values[1]))
    return {int(v) for v in domain.values}


def finished_tuning(root: Path, name: str, text: str) -> Path | None:
    """The newest finished campaign folder of `name` under root whose campaign.yaml is `text`."""
    found = []
    for folder in root.glob(f"{name}-*"):
        try:
            record = FolderRecord.load(folder)
        except (OSError, ValueError, TypeError):
            continue
        if record.finished_at is not None and (folder / "campaign.yaml").read_text() == text:
            found.append((record.finished_at, folder))
    return max(found)[1] if found else None


def tuned_job(suite: Suite, row: RowSpec, job_sets: list[str], out: Path,
              verbose: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the tuned job as a raw mapping, provenance): the champion's settings of the row's
    campaign applied to its base job, its seed dropped."""
    from zerosum.tune.campaign import load_campaign
    from zerosum.tune.champion import find_champion
    from zerosum.tune.driver import campaign_yaml, run_campaign

    path = suite.path(row.tune)
    # Beside the suite folders, not in one: a later run of the suite (more seeds, say) reuses it.
    storage = out.parent / TUNING_FOLDER
    campaign = load_campaign(path, [*job_sets, f"campaign.tracking.storage_path={storage}"])
    folder = finished_tuning(storage, campaign.name, campaign_yaml(campaign))
    if folder is None:
        log.info("row %r: tuning with %s (%d trials)", row.name, path.name, campaign.trial_count())
        folder = run_campaign(campaign, verbose=verbose).folder
    else:
        log.info("row %r: reusing the finished campaign %s", row.name, folder)
    champion = find_champion(folder, campaign.spec.objective.mode)
    if champion is None:
        raise ConfigError(f"{path}: campaign {folder} has no checkpoint to take a champion from")
    params = {k: v for k, v in champion.params.items() if k != SEED_PATH}
    job = campaign.trial_spec(params).model_dump(mode="json")
    record = FolderRecord.load(folder)
    provenance = {"campaign": str(path), "campaign_folder": str(folder), "champion_trial": champion.trial_id,
                  "tuning_wall_s": record.finished_at - record.started_at,
                  "champion_round": champion.round, "champion_objective": champion.objective, "params": params,
                  "tuning_seeds": sorted(campaign_seeds(campaign))}
    return job, provenance


# --------------------------------------------------------------------------- training the seeds


def row_job(suite: Suite, row: RowSpec, index: int, job_sets: list[str], out: Path,
            verbose: bool) -> tuple[Path, dict[str, Any]]:
    """The job file the row's seeds train (written into the suite folder) and its provenance.
    The row's `set`, then the command's `--set`, apply last, over the tuned settings too."""
    # The command's --set changes what the row means: the results page keeps such a row
    # apart from the suite's own (zerosum.benchmark.page.row_label).
    provenance: dict[str, Any] = {"job": str(suite.path(row.job)), "set": list(row.set), "command_set": job_sets}
    if row.tune is not None:
        raw, tuned = tuned_job(suite, row, job_sets, out, verbose)
        provenance |= tuned
    else:
        raw = read_yaml(suite.path(row.job))
        raw.pop("campaign", None)
    spec = validate_job(apply_overrides(raw, [*row.set, *job_sets]),
                        source=f"{suite.source}: suite.rows.{index} ({row.name})")
    check_row(suite, spec, index)
    path = out / "rows" / slug(row.name) / "job.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), path)
    return path, provenance


def check_row(suite: Suite, spec: JobSpec, index: int) -> None:
    """A row must train on the protocol's data."""
    protocol = suite.spec.protocol
    if spec.data.name != protocol.data:
        raise ConfigError(f"{suite.source}: suite.rows.{index}: the job trains on {spec.data.name}, the protocol "
                          f"measures {protocol.data}; set data.name={protocol.data} in the row's set")


def check_rows(suite: Suite, job_sets: list[str], seeds: list[int]) -> None:
    """Everything about the rows that can be refused before anything trains: the jobs with
    their overrides, the protocol's data, and each tuning campaign (its base is the row's
    job; its seeds are not the table's)."""
    from zerosum.tune.campaign import load_campaign

    for index, row in enumerate(suite.spec.rows):
        if row.tune is None:
            spec = load_job(suite.path(row.job), [*row.set, *job_sets])
        else:
            path = suite.path(row.tune)
            campaign = load_campaign(path, job_sets)
            if campaign.base_source.resolve() != suite.path(row.job):
                raise ConfigError(f"{suite.source}: suite.rows.{index}: job is {suite.path(row.job)}, but {path.name} "
                                  f"tunes {campaign.base_source}; a tuned row trains its campaign's base job")
            shared = sorted(campaign_seeds(campaign) & set(seeds))
            if shared:
                raise ConfigError(f"{suite.source}: suite.rows.{index}.tune: {path.name} tunes on seeds {shared}, "
                                  f"which the table reports; tune on other seeds (search schedule.seed over e.g. "
                                  f"[0, 1, 2])")
            spec = validate_job(apply_overrides(campaign.base.model_dump(mode="json"), [*row.set, *job_sets]),
                                source=f"{suite.source}: suite.rows.{index} ({row.name})")
        check_row(suite, spec, index)


def objective_sets(suite: Suite, spec: JobSpec) -> tuple[list[str], dict[str, str]]:
    """(job overrides that make the job report the ranking metric, the objective section)."""
    metric_name, key, mode = PROTOCOL_OBJECTIVES[suite.spec.protocol.kind]
    sets = [] if metric_name in spec.eval.metrics else [f"eval.metrics={[*spec.eval.metrics, metric_name]}"]
    return sets, {"metric": key, "mode": mode}


def seed_campaign(suite: Suite, row: RowSpec, job_path: Path, seeds: list[int], out: Path):
    """The row's seeds as a campaign: a grid over schedule.seed of the row's job."""
    from zerosum.tune.campaign import load_campaign

    spec = load_job(job_path)
    sets, objective = objective_sets(suite, spec)
    name = f"{suite.name}-{slug(row.name)}"
    raw = {"campaign": {"name": name, "base": str(job_path),
                        "description": f"benchmark {suite.name}: {row.name} on seeds {seeds}",
                        "search_space": {SEED_PATH: {"grid": seeds}}, "objective": objective,
                        "search": {"algorithm": "grid"}, "max_concurrent_trials": suite.spec.max_concurrent,
                        "tracking": {"storage_path": str(out / "train"), "register_as": name}}}
    path = job_path.parent / "seeds.yaml"
    atomic_write_text(yaml.safe_dump(raw, sort_keys=False), path)
    return load_campaign(path, sets)


def final_checkpoints(folder: Path) -> dict[str, Path]:
    """{trial id: its last stamped checkpoint folder} in a campaign folder."""
    from zerosum.tune.schema import REPORT_FILE

    last: dict[str, tuple[int, Path]] = {}
    for stamp in folder.glob(f"trial_*/checkpoint_*/{REPORT_FILE}"):
        entry = json.loads(stamp.read_text())
        trial, round_index = entry["trial_id"], int(entry["round"])
        if trial not in last or round_index > last[trial][0]:
            last[trial] = (round_index, stamp.parent)
    return {trial: path for trial, (_, path) in last.items()}


def training_seconds(folder: Path, trial) -> float:
    """A trial's training time: from its start (its record in `<campaign>/train/<trial>/`)
    to its last report; what the campaign adds around it is not counted."""
    from zerosum.tune.schema import TRAIN_FOLDER

    try:
        started = FolderRecord.load(folder / TRAIN_FOLDER / trial.trial_id).started_at
    except (OSError, ValueError, TypeError):
        return trial.wall_s
    return trial.history[-1][0] - started if trial.history else 0.0


@torch.no_grad()
def sample_checkpoint(checkpoint: Path, n: int, seed: int) -> tuple[torch.Tensor, JobSpec]:
    """(n samples (n, *sample_shape) in the job's data scale, the job) from a checkpoint's
    sampler (EMA G when kept), its noise drawn with `seed`, 1,000 at a time."""
    from zerosum.data import describe_dataset
    from zerosum.serving import load_trained_generator
    from zerosum.train import checkpoint as ckpt
    from zerosum.train.build import noise_source_for

    state = ckpt.load_weights(checkpoint / ckpt.STATE_FILE)
    spec = validate_job(yaml.safe_load(state["config_yaml"]), source=str(checkpoint), check_paths=False)
    shape = describe_dataset(spec.data)
    generator = load_trained_generator(spec, state, shape)
    noise = noise_source_for(spec, shape[1])
    rng, cpu = torch.Generator().manual_seed(seed), torch.device("cpu")
    chunks = []
    for start in range(0, n, 1000):
        count = min(1000, n - start)
        chunks.append(generator(noise.sample(count, rng, cpu), noise.labels(count, rng, cpu)))
    return torch.cat(chunks), spec


def train_row(suite: Suite, row: RowSpec, index: int, job_sets: list[str], out: Path, seeds: list[int],
              verbose: bool) -> RowResult:
    """Train the row on every seed and score each seed's final checkpoint."""
    from zerosum.tune.driver import run_campaign

    job_path, provenance = row_job(suite, row, index, job_sets, out, verbose)
    campaign = seed_campaign(suite, row, job_path, seeds, out)
    log.info("row %r: %d seeds", row.name, len(seeds))
    result = run_campaign(campaign, verbose=verbose)
    provenance |= {"seed_campaign": str(result.folder), "seed_campaign_run": result.parent.run_id}
    checkpoints = final_checkpoints(result.folder)
    seed_results = []
    for trial in result.rows:
        seed = int(trial.params[SEED_PATH])
        if trial.trial_id not in checkpoints:
            raise ConfigError(f"row {row.name!r}, seed {seed}: trial {trial.trial_id} left no checkpoint "
                              f"({trial.status}{': ' + trial.error if trial.error else ''})")
        started = time.perf_counter()
        samples, spec = sample_checkpoint(checkpoints[trial.trial_id], suite.spec.protocol.num_samples, seed)
        metrics = protocol_scores(suite.spec.protocol, spec, samples)
        seed_results.append(SeedResult(seed, metrics, training_seconds(result.folder, trial),
                                       time.perf_counter() - started, trial.trial_id, trial.run_id,
                                       str(checkpoints[trial.trial_id])))
    return RowResult(row.name, "zerosum", sorted(seed_results, key=lambda s: s.seed), provenance)


def real_row(suite: Suite, spec: JobSpec, seeds: list[int]) -> RowResult:
    """Training reals through the protocol, one draw per seed: the ceiling."""
    results = []
    for seed in seeds:
        started = time.perf_counter()
        metrics = protocol_scores(suite.spec.protocol, spec, real_samples(suite.spec.protocol, spec, seed), reals=True)
        results.append(SeedResult(seed, metrics, score_s=time.perf_counter() - started))
    return RowResult(REAL_ROW, "real", results, {"samples": "training split, a random subset per seed"})


# --------------------------------------------------------------------------- the whole suite


def machine() -> str:
    """`cpu: <model>, N cores` or the GPU's name, for the results page."""
    import os
    import platform

    if torch.cuda.is_available():
        return f"gpu: {torch.cuda.get_device_name(0)}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {model}, {os.cpu_count()} cores"


def git_commit(cwd: Path) -> str:
    try:
        found = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], cwd=cwd, capture_output=True, text=True,
                               timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return found.stdout.strip() or "unknown"


def run_suite(suite: Suite, job_sets: list[str], out_root: Path, seed_count: int | None = None,
              verbose: bool = False) -> SuiteResult:
    """Train and score every row on every seed; write the table and log the benchmark run."""
    from zerosum.benchmark.table import write_outputs

    started, commit = time.time(), git_commit(Path(__file__).parent)  # the code that runs, not the code at the end
    seeds = suite.spec.seeds[:seed_count] if seed_count else list(suite.spec.seeds)
    check_rows(suite, job_sets, seeds)
    out = new_folder(out_root.resolve(), suite.name)
    atomic_write_text(suite.source.read_text(), out / "suite.yaml")
    rows: list[RowResult] = []
    for index, row in enumerate(suite.spec.rows):
        rows.append(train_row(suite, row, index, job_sets, out, seeds, verbose))
    first = load_job(out / "rows" / slug(suite.spec.rows[0].name) / "job.yaml")
    if suite.spec.real_row:
        rows.insert(0, real_row(suite, first, seeds))
    meta = {"commit": commit, "machine": machine(), "host": socket.gethostname(),
            "command": shlex.join(["zerosum", *sys.argv[1:]]) if sys.argv and "zerosum" in sys.argv[0] else "",
            "seeds": seeds, "started_at": started, "wall_s": time.time() - started,
            "description": suite.spec.description, "protocol_source": suite.spec.protocol.source,
            "notes": protocol_notes(suite.spec.protocol, first)}
    result = SuiteResult(suite.name, str(out), suite.spec.protocol.model_dump(mode="json"), rows, meta)
    atomic_write_text(json.dumps(asdict(result), indent=2), out / RESULTS_FILE)
    write_outputs(suite, result, out)
    # Again, now with the benchmark's MLflow run id.
    atomic_write_text(json.dumps(asdict(result), indent=2), out / RESULTS_FILE)
    return result
