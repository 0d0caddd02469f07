"""`zerosum run SPEC` (train on Ray Train) and `zerosum validate SPEC` (check, print)."""

from __future__ import annotations

import argparse

from zerosum.catalog import METHOD_PLAYERS
from zerosum.cli.common import add_spec_arguments


def cmd_validate(args: argparse.Namespace) -> int:
    from zerosum.config import job_to_yaml, load_job

    spec = load_job(args.spec, args.overrides)
    print(f"# {players_line(spec)}")
    print(job_to_yaml(spec), end="")
    return 0


def players_line(spec) -> str:
    """What the job trains, for people: the method's phases and players (no torch needed)."""
    players = METHOD_PLAYERS[spec.method]
    # pix2pix's L1-alone ablation builds no critic (methods/pix2pix.py).
    has_critic = players["critic"] and not (spec.method == "pix2pix" and spec.loss.adversarial_weight == 0)
    critic = f"{spec.schedule.d_steps} critic update(s) of {', '.join(players['critic'])}, then " \
        if has_critic else "no critic; "
    return f"method {spec.method}: each round {critic}{spec.schedule.g_steps} update(s) of {', '.join(players['generator'])}"


def cmd_run(args: argparse.Namespace) -> int:
    from zerosum.config import job_to_yaml, load_job

    spec = load_job(args.spec, args.overrides)
    if args.dry_run:
        print(job_to_yaml(spec), end="")
        return 0
    from zerosum.cli.progress import watch_run
    from zerosum.train.driver import run_job

    result = run_job(spec, resume=args.resume, watch=watch_run, verbose=args.verbose)
    print(f"run folder:   {result.run_dir}")
    print(f"mlflow run:   {result.run.run_id} (rounds done: {result.rounds_done})")
    print(f"model:        {result.model_uri or 'not logged yet (see the note below)'}")
    print(f"sample grid:  {result.grid_path}")
    if result.final_metrics:
        print("last eval:    " + "  ".join(f"{k} {v:.4g}" for k, v in sorted(result.final_metrics.items())))
    for note in result.notes:
        print(f"note:         {note}")
    return 0


def register_commands(commands) -> None:
    run = commands.add_parser("run", help="train a job spec on Ray Train")
    add_spec_arguments(run)
    run.add_argument("--resume", action="store_true", help="continue the latest run of this job")
    run.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    run.set_defaults(handler=cmd_run)

    validate = commands.add_parser("validate", help="check a job spec and print the resolved config")
    add_spec_arguments(validate)
    validate.set_defaults(handler=cmd_validate)
