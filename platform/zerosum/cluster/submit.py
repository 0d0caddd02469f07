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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerosum import __version__
from zerosum.cluster.head import is_loopback
from zerosum.errors import ZerosumError

SHIPPED_PACKAGES = ("zerosum", "evals")
PACKAGE_EXCLUDES = ["__pycache__/", "*.pyc", "*.pyo"]
TRACKING_ENV = "MLFLOW_TRACKING_URI"


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


# --------------------------------------------------------------------------- specs


def spec_command(raw: dict[str, Any]) -> str:
    """`tune` for a campaign (a top-level `campaign:` section), else `run`."""
    return "tune" if "campaign" in raw else "run"


def validate_spec(path: Path, overrides: list[str]) -> tuple[str, str]:
    """Validate a job spec or campaign as the cluster will; returns (command, name).

    Paths to data are not checked: they name folders on the cluster, not here.
    """
    from zerosum.config import load_job, read_yaml
    from zerosum.tune.campaign import load_campaign

    command = spec_command(read_yaml(path))
    if command == "run":
        return command, load_job(path, overrides, check_paths=False).name
    return command, load_campaign(path, overrides, check_paths=False).name


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
    """MLFLOW_TRACKING_URI (if any) and each --env NAME, for the job's processes."""
    environ = os.environ if environ is None else environ
    env = {"PYTHONUNBUFFERED": "1"}
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

    command, name = validate_spec(args.spec, args.overrides)
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
    )
