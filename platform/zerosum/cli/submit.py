"""`zerosum submit SPEC`: validate here, then run the job spec or campaign on a Ray cluster."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from zerosum.cli.common import add_set_argument


def cmd_submit(args: argparse.Namespace) -> int:
    """Validate, send, then optionally wait for the job or follow its logs."""
    from zerosum.cluster.head import Head
    from zerosum.cluster.submit import prepare_submission

    with tempfile.TemporaryDirectory(prefix="zerosum-submit-") as staging:
        submission = prepare_submission(args, Path(staging))
        for note in submission.notes:
            print(f"note: {note}", file=sys.stderr)
        if args.dry_run:
            print(describe_submission(submission, Path(staging)))
            return 0
        head = Head(args.address, insecure=args.insecure)
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


def describe_submission(submission, staging: Path) -> str:
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


def add_address_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None, metavar="URL",
                        help="the Ray head's dashboard, e.g. http://HEAD:8265 (default: $RAY_ADDRESS); "
                             "the auth token comes from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")
    parser.add_argument("--insecure", action="store_true",
                        help="send the auth token over plain http to a head that is not on loopback "
                             "(refused otherwise: use a tunnel such as kubectl port-forward, or https)")


def add_submit_command(commands) -> None:
    submit = commands.add_parser("submit", help="run a job spec or campaign on a Ray cluster",
                                 description="Validate SPEC here, then run it on the cluster with "
                                             "`zerosum run` (or `zerosum tune` for a campaign).")
    submit.add_argument("spec", type=Path, help="job spec or campaign (YAML)")
    add_set_argument(submit)
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


def register_commands(commands) -> None:
    add_submit_command(commands)
