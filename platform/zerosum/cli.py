"""`zerosum` command line: run, validate, sample, ui (and more, registered by modules).

User mistakes (ZerosumError, ConfigError) print one `error:` message and exit 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from zerosum import __version__
from zerosum.errors import ZerosumError

log = logging.getLogger("zerosum")


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", type=Path, help="job spec (YAML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="A.B=VALUE",
                        help="override a field, e.g. --set optim.d.lr=1e-3 (repeatable)")


def cmd_validate(args: argparse.Namespace) -> int:
    from zerosum.config import job_to_yaml, load_job

    spec = load_job(args.spec, args.overrides)
    print(job_to_yaml(spec), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from zerosum.config import job_to_yaml, load_job

    spec = load_job(args.spec, args.overrides)
    if args.dry_run:
        print(job_to_yaml(spec), end="")
        return 0
    from zerosum.progress import watch_run
    from zerosum.train.runner import run_job

    result = run_job(spec, resume=args.resume, watch=watch_run)
    print(f"run folder:   {result.run_dir}")
    print(f"mlflow run:   {result.mlflow_run_id} (rounds done: {result.rounds_done})")
    print(f"model:        {result.model_uri}")
    print(f"sample grid:  {result.grid_path}")
    if result.final_metrics:
        print("last eval:    " + "  ".join(f"{k} {v:.4g}" for k, v in sorted(result.final_metrics.items())))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from zerosum.sampling import sample_to_png

    path = sample_to_png(args.model_uri, args.num, args.output, label=args.label, seed=args.seed)
    print(f"wrote {path}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from zerosum.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    print(f"MLflow UI on http://127.0.0.1:{args.port} over {uri} (Ctrl-C to stop)")
    return subprocess.call(command, env=env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zerosum", description="Train and evaluate GANs on Ray, tracked in MLflow.")
    parser.add_argument("--version", action="version", version=f"zerosum {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="train a job spec on Ray Train")
    add_spec_arguments(run)
    run.add_argument("--resume", action="store_true", help="continue the latest run of this job")
    run.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    run.set_defaults(handler=cmd_run)

    validate = commands.add_parser("validate", help="check a job spec and print the resolved config")
    add_spec_arguments(validate)
    validate.set_defaults(handler=cmd_validate)

    sample = commands.add_parser("sample", help="draw samples from a logged generator into a PNG")
    sample.add_argument("model_uri", help="e.g. models:/mnist-dcgan@latest or runs:/<id>/generator")
    sample.add_argument("-n", "--num", type=int, default=64, help="number of samples (default 64)")
    sample.add_argument("--label", type=int, default=None, help="class to draw (conditional models)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("-o", "--output", type=Path, default=Path("samples.png"))
    sample.set_defaults(handler=cmd_sample)

    ui = commands.add_parser("ui", help="the MLflow UI on 127.0.0.1 over zerosum's store")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=cmd_ui)

    for register in extra_command_modules():
        register(commands)
    return parser


def extra_command_modules():
    """Commands that live beside the features they drive (evals, tune, jobs)."""
    import importlib

    registrars = []
    for name in ("zerosum.featurizer", "zerosum.evaluate", "zerosum.campaign", "zerosum.jobs"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        registrars.append(module.register_commands)
    return registrars


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return args.handler(args)
    except ZerosumError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
