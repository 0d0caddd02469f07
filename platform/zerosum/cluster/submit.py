"""A submission to a Ray cluster (what `zerosum submit` sends; the CLI is cli/submit.py).

A submission is validated here first (nothing is sent for a bad spec), then sent
with Ray's Jobs API as:

- working_dir: a fresh temporary folder holding only the spec (and YAML files it
  names beside it), never the repo root: the repo's `platform/` folder on a
  worker's PYTHONPATH would shadow the stdlib `platform` module;
- py_modules: the `zerosum` and `evals` package folders, so the cluster runs this
  checkout's code whatever version its image has;
- entrypoint: `python -m zerosum.cli run|tune SPEC --set ...` (a campaign, a spec
  with a top-level `campaign:` section, runs `tune`);
- env_vars: MLFLOW_TRACKING_URI (or --tracking-uri) and any `--env NAME`, so runs land
  in the shared MLflow.

Before anything is sent, cheapest first: the spec (here, with its data paths left to
the cluster, except relative ones, which can name nothing there), then the MLflow
server (`tracking_server_problem`), then the head, whose totals must hold what the job
asks for at once (`resource_needs`, `capacity_problem`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import secrets
import shlex
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerosum import __version__
from zerosum.cluster.head import SCHEDULED_RESOURCES, ClusterResources, is_loopback
from zerosum.errors import ConfigError, ZerosumError
from zerosum.runtime import ray_train_settings

SHIPPED_PACKAGES = ("zerosum", "evals")
PACKAGE_EXCLUDES = ["__pycache__/", "*.pyc", "*.pyo"]
TRACKING_ENV = "MLFLOW_TRACKING_URI"
# Seconds the MLflow server's /health gets to answer before the job is refused: a live
# server answers in milliseconds, and a refused connection fails at once.
TRACKING_PROBE_TIMEOUT_S = 3.0
# Spec fields that name files or folders the job reads.
READ_PATH_FIELDS = (("data", "root"), ("data", "source", "root"), ("eval", "featurizer_path"),
                    ("eval", "inception_weights"))
DRIVER_FLAGS = {"CPU": "--num-cpus", "GPU": "--num-gpus"}


@dataclass
class Submission:
    """Everything sent to the head for one job."""

    submission_id: str
    entrypoint: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str]
    num_cpus: float | None = None
    num_gpus: float | None = None
    notes: list[str] = field(default_factory=list)
    tracking_uri: str | None = None
    needs: ResourceNeeds | None = None


@dataclass(frozen=True)
class ResourceNeeds:
    """What a job asks of the cluster at once: `workers` bundles of `per_worker` (each on
    one node), plus the driver's own reservation. The text fields name the spec fields
    behind the numbers, for messages."""

    workers: int
    per_worker: dict[str, float]
    driver: dict[str, float]
    count: str                  # the bundles and their field, e.g. "2 workers (scaling.num_workers)"
    fields: dict[str, str]      # resource -> the field behind per_worker, e.g. "scaling.cpus_per_worker"
    remedies: dict[str, str]    # resource -> what to change in the spec

    def total(self, resource: str) -> float:
        return self.workers * self.per_worker.get(resource, 0.0) + self.driver.get(resource, 0.0)


# --------------------------------------------------------------------------- specs


def spec_command(raw: dict[str, Any]) -> str:
    """`tune` for a campaign (a top-level `campaign:` section), else `run`."""
    return "tune" if "campaign" in raw else "run"


def load_spec(path: Path, overrides: list[str]) -> tuple[str, Any]:
    """Validate a job spec or campaign as the cluster will; returns (command, JobSpec or Campaign).

    Paths to data are not checked: they name folders on the cluster, not here. The
    job's own `zerosum run`/`tune` checks them there before anything else, and fails
    in one line that names the field and the path (which `--wait` then prints).
    """
    from zerosum.config import load_job, read_yaml
    from zerosum.tune.campaign import load_campaign

    command = spec_command(read_yaml(path))
    if command == "run":
        return command, load_job(path, overrides, check_paths=False)
    return command, load_campaign(path, overrides, check_paths=False)


def validate_spec(path: Path, overrides: list[str]) -> tuple[str, str]:
    """`load_spec`, for its (command, name)."""
    command, loaded = load_spec(path, overrides)
    return command, loaded.name


def written_job(path: Path, overrides: list[str], loaded: Any) -> dict[str, Any]:
    """The job mapping as written, before paths are made absolute: a job spec with its
    `--set`s, or a campaign's base job with the `--set`s that are not `campaign.*`."""
    from zerosum.config import apply_overrides, read_yaml

    raw = read_yaml(path)
    if "campaign" not in raw:
        return apply_overrides(raw, overrides)
    from zerosum.tune.campaign import base_job_raw

    base, _ = base_job_raw(path, raw, loaded.spec)
    return apply_overrides(base, [o for o in overrides if not o.strip().startswith("campaign.")])


def relative_path_problem(job: dict[str, Any]) -> str | None:
    """A path the job reads that is relative, and so names nothing on the cluster; or None.

    On the cluster the job runs in a fresh folder that holds only the staged spec, and
    a relative path resolves there. Left alone: a data.root that data.download fills,
    and tracking.storage_path, which the job creates."""
    for keys in READ_PATH_FIELDS:
        parent: Any = job
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or parent.get(keys[-1]) is None:
            continue
        if keys[-1] == "root" and parent.get("download"):
            continue
        text = str(parent[keys[-1]])
        if not text.startswith("~") and not Path(text).is_absolute():
            name = ".".join(keys)
            return (f"{name}: {text!r} is relative, and on the cluster the job runs in a fresh folder that "
                    f"holds only the spec; give the absolute path on the cluster's shared storage "
                    f"(--set {name}=/ABSOLUTE/PATH)")
    return None


# --------------------------------------------------------------------------- resources


def resource_needs(command: str, loaded: Any, driver_cpus: float | None,
                   driver_gpus: float | None) -> ResourceNeeds:
    """What the job asks of the cluster at once, as Ray Train and Tune will ask for it.

    A job spec: scaling.num_workers bundles of {CPU: scaling.cpus_per_worker, GPU: 1 if
    scaling.use_gpu} (Ray Train V2's controller takes none). A campaign: one trial, the
    least it runs with: trial.mode single is one process of {campaign.resources.cpus,
    .gpus}; ray-train is campaign.trial.num_workers bundles of {cpus, GPU: 1 if gpus > 0}
    beside a trial process of 0 CPU (tune/driver.py). Both plus the driver's --num-cpus
    and --num-gpus."""
    driver = {"CPU": driver_cpus or 0.0, "GPU": driver_gpus or 0.0}
    if command == "run":
        scaling = loaded.scaling
        count = f"{scaling.num_workers} worker(s) (scaling.num_workers)"
        return ResourceNeeds(
            scaling.num_workers, {"CPU": scaling.cpus_per_worker, "GPU": float(scaling.use_gpu)}, driver, count,
            {"CPU": "scaling.cpus_per_worker", "GPU": "scaling.use_gpu"},
            {"CPU": "lower scaling.num_workers or scaling.cpus_per_worker",
             "GPU": "lower scaling.num_workers, or set scaling.use_gpu: false"})
    spec = loaded.spec
    fields = {"CPU": "campaign.resources.cpus", "GPU": "campaign.resources.gpus"}
    if spec.trial.mode == "single":
        return ResourceNeeds(1, {"CPU": spec.resources.cpus, "GPU": spec.resources.gpus}, driver,
                             "one trial (campaign.trial.mode single)", fields,
                             {name: f"lower {field_name}" for name, field_name in fields.items()})
    workers = spec.trial.num_workers
    return ResourceNeeds(workers, {"CPU": spec.resources.cpus, "GPU": float(spec.resources.gpus > 0)}, driver,
                         f"one trial of {workers} worker(s) (campaign.trial.num_workers)", fields,
                         {"CPU": "lower campaign.trial.num_workers or campaign.resources.cpus",
                          "GPU": "lower campaign.trial.num_workers, or set campaign.resources.gpus: 0"})


def capacity_problem(needs: ResourceNeeds, resources: ClusterResources, address: str) -> str | None:
    """Why the job can never start on a cluster of these resources, or None.

    Only a fixed cluster (no autoscaler) is judged: an autoscaler may add the nodes,
    and its limits are not in the status. Each bundle must also fit on one node."""
    if not resources.fixed:
        return None
    problems = []
    for name in SCHEDULED_RESOURCES:
        need, have, largest = needs.total(name), resources.total[name], resources.largest_node[name]
        per, driver, flag = needs.per_worker.get(name, 0.0), needs.driver.get(name, 0.0), DRIVER_FLAGS[name]
        if need > have:
            problems.append(
                f"the job needs {need:g} {name} at once, {needs.count} x {per:g} {name} ({needs.fields[name]}) "
                f"+ {driver:g} for the driver ({flag}): {needs.remedies[name]}"
                + (f", or a smaller {flag}" if driver else ""))
        elif per > largest:
            problems.append(f"each of its bundles needs {per:g} {name} on one node ({needs.fields[name]}), and "
                            f"the largest node has {largest:g}: lower {needs.fields[name]}")
        elif driver > largest:
            problems.append(f"its driver needs {driver:g} {name} on one node ({flag}), and the largest node has "
                            f"{largest:g}: pass a smaller {flag}")
    if not problems:
        return None
    totals = " and ".join(f"{resources.total[name]:g} {name}" for name in SCHEDULED_RESOURCES)
    return (f"the Ray cluster at {address} has {totals} in all, and no autoscaler to add nodes; "
            + "; and ".join(problems))


# --------------------------------------------------------------------------- tracking server


def without_credentials(uri: str) -> str:
    """The URI without a user:password@ part (it is printed)."""
    parts = urllib.parse.urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def tracking_server_problem(uri: str | None, source: str,
                            timeout_s: float = TRACKING_PROBE_TIMEOUT_S) -> str | None:
    """Why the MLflow server at `uri` cannot take the job's runs, or None.

    Only an http(s) URI names a server to ask. Asks its `/health`, which every MLflow
    server serves, open even where basic auth guards the rest. No answer, a 5xx (a proxy
    whose MLflow is down) and a 404 (another service on that port) are refused; 401 and
    403 (a login in front of the server) count as an answer."""
    if not uri or not uri.startswith(("http://", "https://")):
        return None
    # urllib would take user:password@ for part of the host; /health needs no credentials.
    shown = without_credentials(uri)
    url = shown.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            code = response.status
    except urllib.error.HTTPError as err:
        code = err.code
    except (OSError, ValueError) as err:  # URLError is an OSError; ValueError: a malformed URI
        return tracking_refusal(source, shown, f"GET {url}: {probe_reason(err, timeout_s)}")
    if code == 404:
        return tracking_refusal(source, shown, f"GET {url}: HTTP 404, not an MLflow server")
    if code >= 500:
        return tracking_refusal(source, shown, f"GET {url}: HTTP {code}")
    return None


def probe_reason(err: Exception, timeout_s: float) -> str:
    """Why a request got no answer, in a few words: 'Connection refused', 'no answer within 3 s'."""
    reason = getattr(err, "reason", err)
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return f"no answer within {timeout_s:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)


def tracking_refusal(source: str, uri: str, tried: str) -> str:
    return (f"{source} {uri}: the MLflow server does not answer ({tried}); start it or fix the URI, "
            f"or pass --tracking-uri cluster to keep the cluster's own {TRACKING_ENV}")


def referenced_files(raw: Any, spec_dir: Path) -> list[Path]:
    """YAML files that a spec names by a relative path inside its own folder (a campaign's base job)."""
    found: list[Path] = []
    if isinstance(raw, dict):
        for value in raw.values():
            found += referenced_files(value, spec_dir)
    elif isinstance(raw, list):
        for value in raw:
            found += referenced_files(value, spec_dir)
    elif isinstance(raw, str) and raw.endswith((".yaml", ".yml")) and not Path(raw).is_absolute():
        candidate = (spec_dir / raw).resolve()
        if candidate.is_file() and candidate.is_relative_to(spec_dir.resolve()):
            found.append(candidate)
    return found


def stage_working_dir(spec_path: Path, staging: Path) -> str:
    """Copy the spec (and YAML files it names beside it) into `staging`; returns the spec's name there."""
    from zerosum.config import read_yaml

    spec_dir = spec_path.resolve().parent
    shutil.copyfile(spec_path, staging / spec_path.name)
    for extra in referenced_files(read_yaml(spec_path), spec_dir):
        target = staging / extra.relative_to(spec_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(extra, target)
    return spec_path.name


# --------------------------------------------------------------------------- runtime env


def shipped_package_dirs() -> list[Path]:
    """The folders of the zerosum and evals packages (never a repo root or `platform/`)."""
    dirs = []
    for name in SHIPPED_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            if name == "zerosum":
                raise ZerosumError("cannot find the zerosum package folder to ship")
            continue
        folder = Path(list(spec.submodule_search_locations)[0]).resolve()
        if folder.name != name or not (folder / "__init__.py").is_file():
            raise ZerosumError(f"refusing to ship {folder}: expected the '{name}' package folder")
        dirs.append(folder)
    return dirs


def job_tracking_uri(option: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The MLflow URI to hand the job: --tracking-uri, else MLFLOW_TRACKING_URI here.

    `cluster` (or no URI anywhere) hands none: the job uses the cluster's own setting.
    """
    environ = os.environ if environ is None else environ
    if option == "cluster":
        return None
    return option or environ.get(TRACKING_ENV) or None


def job_env_vars(pass_env: list[str], tracking_uri: str | None,
                 environ: dict[str, str] | None = None) -> dict[str, str]:
    """MLFLOW_TRACKING_URI (if any), zerosum's Ray Train settings and each --env NAME, for
    the job's processes."""
    environ = os.environ if environ is None else environ
    env = {"PYTHONUNBUFFERED": "1", **ray_train_settings(environ)}
    if tracking_uri:
        env[TRACKING_ENV] = tracking_uri
    for name in pass_env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ZerosumError(f"--env {name!r}: expected an environment variable name")
        if name not in environ:
            raise ZerosumError(f"--env {name}: it is not set in this environment")
        env[name] = environ[name]
    return env


def build_runtime_env(working_dir: Path, env_vars: dict[str, str]) -> dict[str, Any]:
    """Ray runtime_env: the staged spec folder, zerosum/evals as py_modules, env vars."""
    return {
        "working_dir": str(working_dir),
        "py_modules": [str(folder) for folder in shipped_package_dirs()],
        "excludes": list(PACKAGE_EXCLUDES),
        "env_vars": dict(env_vars),
    }


def build_entrypoint(command: str, spec_name: str, overrides: list[str]) -> str:
    """`python -m zerosum.cli run SPEC --set a=b ...`, quoted for the job's shell."""
    words = ["python", "-m", "zerosum.cli", command, spec_name]
    for override in overrides:
        words += ["--set", override]
    return shlex.join(words)


def new_submission_id(name: str) -> str:
    """`zerosum-<name>-<UTC time>-<random>`: readable in `jobs list`, unique on the cluster."""
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-")[:40] or "job"
    return f"zerosum-{slug}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def tracking_notes(uri: str | None, option: str | None, address: str) -> list[str]:
    """Warnings about where the job's MLflow runs will land."""
    if option == "cluster":
        return []
    if not uri:
        return [f"{TRACKING_ENV} is not set here: the job logs to the cluster's own default "
                f"(pass --tracking-uri URI, or --tracking-uri cluster if the cluster sets {TRACKING_ENV})"]
    if uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri:
        return [f"tracking URI {uri} is a local path: the job writes it on the cluster's node, "
                f"which is only this machine for a local head"]
    if is_loopback(uri) and not is_loopback(address):
        return [f"tracking URI {uri} is this machine's loopback, but the head is {address}: pass the "
                f"URI the cluster reaches MLflow at (--tracking-uri), or --tracking-uri cluster"]
    return []


def prepare_submission(args: argparse.Namespace, staging: Path) -> Submission:
    """Validate the spec and assemble the submission; sends nothing."""
    from zerosum.cluster.head import resolve_address

    command, loaded = load_spec(args.spec, args.overrides)
    name = loaded.name
    problem = relative_path_problem(written_job(args.spec, args.overrides, loaded))
    if problem:
        raise ConfigError(f"{args.spec}: {problem}")
    try:
        address = resolve_address(args.address)
    except ZerosumError:
        # A dry run may leave out the head; a real submission needs it (checked after the spec).
        if not args.dry_run:
            raise
        address = ""
    tracking_uri = job_tracking_uri(args.tracking_uri)
    spec_name = stage_working_dir(args.spec, staging)
    return Submission(
        submission_id=new_submission_id(name),
        entrypoint=build_entrypoint(command, spec_name, args.overrides),
        runtime_env=build_runtime_env(staging, job_env_vars(args.pass_env, tracking_uri)),
        metadata={"zerosum.command": command, "zerosum.spec": spec_name, "zerosum.name": name,
                  "zerosum.version": __version__},
        num_cpus=args.num_cpus, num_gpus=args.num_gpus,
        notes=tracking_notes(tracking_uri, args.tracking_uri, address),
        tracking_uri=tracking_uri,
        needs=resource_needs(command, loaded, args.num_cpus, args.num_gpus),
    )
