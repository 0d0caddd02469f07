"""`zerosum submit SPEC`: validate here, then run the job spec or campaign on a Ray cluster."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from zerosum.cli.common import add_set_argument
from zerosum.errors import ZerosumError, first_line

# Exit status of a job that refused its input on the cluster (its `zerosum run` exited so).
BAD_INPUT_EXIT = 2


def cmd_submit(args: argparse.Namespace) -> int:
    """Validate, send, then optionally wait for the job or follow its logs.

    Refusals come cheapest first: the spec (no network), the MLflow server (one short
    request), the head's resources (one more, once connected)."""
    from zerosum.cluster.head import Head
    from zerosum.cluster.submit import prepare_submission, tracking_server_problem

    with tempfile.TemporaryDirectory(prefix="zerosum-submit-") as staging:
        submission = prepare_submission(args, Path(staging))
        for note in submission.notes:
            print(f"note: {note}", file=sys.stderr)
        if args.dry_run:
            print(describe_submission(submission, Path(staging)))
            return 0
        problem = tracking_server_problem(submission.tracking_uri,
                                          "--tracking-uri" if args.tracking_uri else "MLFLOW_TRACKING_URI")
        if problem:
            raise ZerosumError(problem)
        head = Head(args.address, insecure=args.insecure)
        refuse_what_never_fits(head, submission, args.spec)
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


def refuse_what_never_fits(head, submission, spec: Path) -> None:
    """Raise if the job asks for more than the cluster has and no autoscaler can add it:
    Ray would keep it waiting for ever, without a word."""
    from zerosum.cluster.head import cluster_resources
    from zerosum.cluster.submit import capacity_problem

    status = head.cluster_status()
    resources = cluster_resources(status) if status else None
    if resources is None or submission.needs is None:
        return  # nothing to judge by; --wait reports a demand that stays pending
    problem = capacity_problem(submission.needs, resources, head.address)
    if problem:
        raise ZerosumError(f"{spec}: refusing to submit: {problem}")


def describe_submission(submission, staging: Path) -> str:
    """What `--dry-run` shows: everything that would be sent, and nothing secret."""
    env = submission.runtime_env
    files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    lines = [
        f"job id:      {submission.submission_id}",
        f"entrypoint:  {submission.entrypoint}",
        f"working_dir: {', '.join(files)}",
        f"py_modules:  {', '.join(env['py_modules'])}",
        f"env_vars:    {', '.join(sorted(env['env_vars']))}",
        f"resources:   {submission.num_cpus or 0} CPU, {submission.num_gpus or 0} GPU for the driver",
    ]
    needs = submission.needs
    if needs:
        lines.append(f"at once:     {needs.total('CPU'):g} CPU, {needs.total('GPU'):g} GPU with the driver's "
                     f"({needs.count})")
    return "\n".join(lines)


def finish(head, job_id: str, follow: bool) -> int:
    """Wait for a job (streaming its logs if `follow`); 0 only if it SUCCEEDED.

    A job that waits for resources is said so, with Ray's pending demand (DemandWatch).
    A FAILED job ends with the one line that says why (`job_failure_line`), and exits 2
    where the job refused its input (its own exit status), else 1."""
    from zerosum.cluster.head import DemandWatch

    watch = DemandWatch(head.cluster_status, say=lambda line: print(line, file=sys.stderr, flush=True))
    try:
        if follow:
            head.follow(job_id, write=lambda chunk: print(chunk, end="", flush=True), on_poll=watch)
            status = head.wait(job_id)
        else:
            status = head.wait(job_id, on_change=lambda s: print(f"status: {s}", flush=True), on_poll=watch)
    except KeyboardInterrupt:
        print(f"\nstopped waiting; the job keeps running (zerosum jobs stop {job_id} stops it)",
              file=sys.stderr)
        raise
    if status == "SUCCEEDED":
        print(f"job {job_id}: {status}")
        return 0
    print(f"job {job_id}: {status}" + ("" if follow else f" (logs: zerosum jobs logs {job_id} --address {head.address})"))
    with head.errors(job_id):
        info = head.client.get_job_info(job_id)
    if status != "FAILED":
        if info.message:
            print(f"message: {first_line(info.message)}", file=sys.stderr)
        return 1
    print(failure_report(head, job_id, info.message), file=sys.stderr)
    return BAD_INPUT_EXIT if info.driver_exit_code == BAD_INPUT_EXIT else 1


def failure_report(head, job_id: str, message: str | None) -> str:
    """`error: ...`: the job's own error line, or what else ended it."""
    from zerosum.cluster.head import ERROR_PREFIX, job_failure_line

    line = job_failure_line(message)
    if line is None or not message or "\n" not in message.strip():
        # Ray's message carries no logs (an older head, say): read their tail.
        with head.errors(job_id):
            line = job_failure_line(message, head.client.get_job_logs(job_id)) or line
    if line and line.startswith(ERROR_PREFIX):
        return line
    return f"error: job {job_id} failed on the cluster: {line or 'Ray gave no reason'}"


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
    submit.add_argument("--wait", action="store_true",
                        help="wait for the job; exit 1 unless it SUCCEEDED (2 if it refused its input)")
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
