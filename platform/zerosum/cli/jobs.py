"""`zerosum jobs list|status|logs|stop`: the jobs on a Ray cluster."""

from __future__ import annotations

import argparse
import sys
import time

from zerosum.cli.submit import add_address_argument

# Seconds `jobs stop` waits for the job to reach STOPPED.
STOP_WAIT_S = 60.0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    """One line per submitted job, oldest first."""
    from zerosum.cluster.head import Head

    head = Head(args.address, insecure=args.insecure)
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
    from zerosum.cluster.head import Head

    head = Head(args.address, insecure=args.insecure)
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
    from zerosum.cluster.head import DemandWatch, Head

    head = Head(args.address, insecure=args.insecure)
    if args.follow:
        # As `zerosum submit --follow`: a job that waits for resources is said so, on stderr.
        watch = DemandWatch(head.cluster_status, say=lambda line: print(line, file=sys.stderr, flush=True))
        head.follow(args.job_id, write=lambda chunk: print(chunk, end="", flush=True), on_poll=watch)
        return 0
    with head.errors(args.job_id):
        print(head.client.get_job_logs(args.job_id), end="")
    return 0


def cmd_jobs_stop(args: argparse.Namespace) -> int:
    """Ask the head to stop a job, then wait (briefly) for it to be STOPPED."""
    from zerosum.cluster.head import TERMINAL_STATUSES, Head

    head = Head(args.address, insecure=args.insecure)
    before = head.status(args.job_id)
    if before in TERMINAL_STATUSES:
        print(f"job {args.job_id} already ended: {before}")
        return 0
    with head.errors(args.job_id):
        head.client.stop_job(args.job_id)
    status = head.wait(args.job_id, timeout_s=STOP_WAIT_S)
    print(f"job {args.job_id}: {status}")
    return 0 if status in TERMINAL_STATUSES else 1


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
    add_jobs_command(commands)
