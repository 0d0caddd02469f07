"""`zerosum submit` and `zerosum jobs ...`: run job specs and campaigns on a Ray cluster.

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
import inspect
import os
import re
import secrets
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerosum import __version__
from zerosum.errors import ZerosumError

SHIPPED_PACKAGES = ("zerosum", "evals")
PACKAGE_EXCLUDES = ["__pycache__/", "*.pyc", "*.pyo"]
TRACKING_ENV = "MLFLOW_TRACKING_URI"
STOP_WAIT_S = 60.0


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
    from zerosum.config import apply_overrides, load_job, read_yaml

    raw = read_yaml(path)
    command = spec_command(raw)
    if command == "run":
        return command, load_job(path, overrides, check_paths=False).name
    load_campaign = campaign_loader()
    if load_campaign is None:
        merged = apply_overrides(raw, overrides)
        return command, str((merged.get("campaign") or {}).get("name") or merged.get("name") or path.stem)
    kwargs = {"check_paths": False} if "check_paths" in inspect.signature(load_campaign).parameters else {}
    campaign = load_campaign(path, overrides, **kwargs)
    return command, str(getattr(campaign, "name", None) or path.stem)


def campaign_loader():
    """`load_campaign` from the Tune feature (zerosum.campaign or zerosum.campaign_spec), if installed."""
    for module_name in ("zerosum.campaign", "zerosum.campaign_spec"):
        if importlib.util.find_spec(module_name) is not None:
            loader = getattr(importlib.import_module(module_name), "load_campaign", None)
            if loader is not None:
                return loader
    return None


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
    if _is_loopback(uri) and not _is_loopback(address):
        return [f"tracking URI {uri} is this machine's loopback, but the head is {address}: pass the "
                f"URI the cluster reaches MLflow at (--tracking-uri), or --tracking-uri cluster"]
    return []


def _is_loopback(url: str) -> bool:
    from urllib.parse import urlparse

    host = urlparse(url if "://" in url else f"http://{url}").hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def prepare_submission(args: argparse.Namespace, staging: Path) -> Submission:
    """Validate the spec and assemble the submission; sends nothing."""
    from zerosum.jobs_client import resolve_address

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


# --------------------------------------------------------------------------- CLI


def cmd_submit(args: argparse.Namespace) -> int:
    """Validate, send, then optionally wait for the job or follow its logs."""
    from zerosum.jobs_client import Head

    with tempfile.TemporaryDirectory(prefix="zerosum-submit-") as staging:
        submission = prepare_submission(args, Path(staging))
        for note in submission.notes:
            print(f"note: {note}", file=sys.stderr)
        if args.dry_run:
            print(describe_submission(submission, Path(staging)))
            return 0
        head = Head(args.address)
        with head.errors():
            head.client.submit_job(
                entrypoint=submission.entrypoint, submission_id=submission.submission_id,
                runtime_env=submission.runtime_env, metadata=submission.metadata,
                entrypoint_num_cpus=submission.num_cpus, entrypoint_num_gpus=submission.num_gpus)
    job_id = submission.submission_id
    print(f"submitted {job_id} to {head.address}")
    print(f"entrypoint: {submission.entrypoint}")
    if not (args.wait or args.follow):
        print(f"follow it with: zerosum jobs logs {job_id} --follow --address {head.address}")
        return 0
    return finish(head, job_id, follow=args.follow)


def describe_submission(submission: Submission, staging: Path) -> str:
    """What `--dry-run` shows: everything that would be sent, and nothing secret."""
    env = submission.runtime_env
    files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    return "\n".join([
        f"job id:      {submission.submission_id}",
        f"entrypoint:  {submission.entrypoint}",
        f"working_dir: {', '.join(files)}",
        f"py_modules:  {', '.join(env['py_modules'])}",
        f"env_vars:    {', '.join(sorted(env['env_vars']))}",
        f"resources:   {submission.num_cpus or 0} CPU, {submission.num_gpus or 0} GPU for the driver",
    ])


def finish(head, job_id: str, follow: bool) -> int:
    """Wait for a job (streaming its logs if `follow`); 0 only if it SUCCEEDED."""
    try:
        if follow:
            head.follow(job_id, write=lambda chunk: print(chunk, end="", flush=True))
            status = head.wait(job_id)
        else:
            status = head.wait(job_id, on_change=lambda s: print(f"status: {s}", flush=True))
    except KeyboardInterrupt:
        print(f"\nstopped waiting; the job keeps running (zerosum jobs stop {job_id} stops it)",
              file=sys.stderr)
        raise
    print(f"job {job_id}: {status}")
    if status != "SUCCEEDED":
        with head.errors(job_id):
            info = head.client.get_job_info(job_id)
        if info.message:
            print(f"message: {info.message}", file=sys.stderr)
        if not follow:
            print(f"logs: zerosum jobs logs {job_id} --address {head.address}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


def cmd_jobs_list(args: argparse.Namespace) -> int:
    """One line per submitted job, oldest first."""
    from zerosum.jobs_client import Head

    head = Head(args.address)
    with head.errors():
        jobs = [job for job in head.client.list_jobs() if job.submission_id]
    jobs.sort(key=lambda job: job.start_time or 0)
    if not jobs:
        print(f"no jobs on {head.address}")
    for job in jobs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((job.start_time or 0) / 1000))
        entry = job.entrypoint if len(job.entrypoint) <= 70 else job.entrypoint[:67] + "..."
        print(f"{job.submission_id:<48} {job.status.value:<10} {started}  {entry}")
    return 0


def cmd_jobs_status(args: argparse.Namespace) -> int:
    """Status, message, times and entrypoint of one job."""
    from zerosum.jobs_client import Head

    head = Head(args.address)
    with head.errors(args.job_id):
        info = head.client.get_job_info(args.job_id)
    print(f"job:        {args.job_id}")
    print(f"status:     {info.status.value}")
    print(f"message:    {info.message or ''}")
    print(f"entrypoint: {info.entrypoint}")
    for label, stamp in (("started", info.start_time), ("ended", info.end_time)):
        if stamp:
            print(f"{label + ':':<11} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(stamp / 1000))}")
    return 0


def cmd_jobs_logs(args: argparse.Namespace) -> int:
    """All logs so far, or (--follow) a live tail until the job ends."""
    from zerosum.jobs_client import Head

    head = Head(args.address)
    if args.follow:
        head.follow(args.job_id, write=lambda chunk: print(chunk, end="", flush=True))
        return 0
    with head.errors(args.job_id):
        print(head.client.get_job_logs(args.job_id), end="")
    return 0


def cmd_jobs_stop(args: argparse.Namespace) -> int:
    """Ask the head to stop a job, then wait (briefly) for it to be STOPPED."""
    from zerosum.jobs_client import TERMINAL_STATUSES, Head

    head = Head(args.address)
    before = head.status(args.job_id)
    if before in TERMINAL_STATUSES:
        print(f"job {args.job_id} already ended: {before}")
        return 0
    with head.errors(args.job_id):
        head.client.stop_job(args.job_id)
    status = head.wait(args.job_id, timeout_s=STOP_WAIT_S)
    print(f"job {args.job_id}: {status}")
    return 0 if status in TERMINAL_STATUSES else 1


def add_address_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None, metavar="URL",
                        help="the Ray head's dashboard, e.g. http://HEAD:8265 (default: $RAY_ADDRESS); "
                             "the auth token comes from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")


def add_submit_command(commands) -> None:
    submit = commands.add_parser("submit", help="run a job spec or campaign on a Ray cluster",
                                 description="Validate SPEC here, then run it on the cluster with "
                                             "`zerosum run` (or `zerosum tune` for a campaign).")
    submit.add_argument("spec", type=Path, help="job spec or campaign (YAML)")
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="A.B=VALUE",
                        help="override a field, e.g. --set optim.d.lr=1e-3 (repeatable)")
    add_address_argument(submit)
    submit.add_argument("--dry-run", action="store_true", help="validate and show what would be sent; send nothing")
    submit.add_argument("--wait", action="store_true", help="wait for the job; exit 1 unless it SUCCEEDED")
    submit.add_argument("--follow", action="store_true", help="stream the job's logs until it ends (implies --wait)")
    submit.add_argument("--num-cpus", type=float, default=1.0,
                        help="CPUs reserved for the driver `zerosum run` (default 1; workers ask for their own)")
    submit.add_argument("--num-gpus", type=float, default=None, help="GPUs reserved for the driver (default 0)")
    submit.add_argument("--tracking-uri", default=None, metavar="URI|cluster",
                        help="MLflow URI for the job (default: $MLFLOW_TRACKING_URI here); "
                             "'cluster' keeps the cluster's own MLFLOW_TRACKING_URI")
    submit.add_argument("--env", dest="pass_env", action="append", default=[], metavar="NAME",
                        help="also pass this environment variable to the job (repeatable)")
    submit.set_defaults(handler=cmd_submit)


def add_jobs_command(commands) -> None:
    jobs = commands.add_parser("jobs", help="list, inspect, tail and stop cluster jobs")
    actions = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="jobs submitted to the cluster")
    add_address_argument(listing)
    listing.set_defaults(handler=cmd_jobs_list)
    for name, handler, text in (("status", cmd_jobs_status, "a job's status and message"),
                                ("logs", cmd_jobs_logs, "a job's logs"),
                                ("stop", cmd_jobs_stop, "stop a running job")):
        action = actions.add_parser(name, help=text)
        action.add_argument("job_id", help="the submission id that `zerosum submit` printed")
        add_address_argument(action)
        if name == "logs":
            action.add_argument("--follow", action="store_true", help="stream until the job ends")
        action.set_defaults(handler=handler)


def register_commands(commands) -> None:
    """Called by zerosum.cli: adds `submit` and `jobs`."""
    add_submit_command(commands)
    add_jobs_command(commands)
