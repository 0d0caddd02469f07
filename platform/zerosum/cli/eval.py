"""`zerosum eval`: score a generator (or a folder of images) against real data.

    zerosum eval --real jobs/mnist-dcgan.yaml --fake models:/mnist-dcgan@candidate --metrics fid,kid,mmd,classes
    zerosum eval --real path/to/real_pngs --fake path/to/fake_pngs --metrics fid,kid --features inception

KID takes torch-fidelity's protocol flags (`--kid-subset-size`, `--kid-subsets`),
so `zerosum eval ... --metrics kid` compares with `fidelity --kid` on the same
images. Prints a table and, with `--log-to EXPERIMENT`, records it as an MLflow run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zerosum.catalog import (
    DISTRIBUTION_METRICS,
    EVAL_NUM_SAMPLES,
    FEATURE_KINDS,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    MMD_PERMUTATIONS,
)
from zerosum.cli.common import add_set_argument, positive_int
from zerosum.errors import ConfigError


def parse_metrics(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(DISTRIBUTION_METRICS))
    if unknown or not names:
        raise ConfigError(f"--metrics: unknown {', '.join(unknown) or '(none given)'}; "
                          f"allowed: {', '.join(DISTRIBUTION_METRICS)}")
    return names


def print_table(metrics: dict[str, float], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.6g}")
    Console().print(table)


def cmd_eval(args: argparse.Namespace) -> int:
    from zerosum.evaluation.offline import EvalRequest, evaluate

    request = EvalRequest(
        real=args.real, fake=args.fake, metrics=parse_metrics(args.metrics), num_samples=args.num_samples,
        features=args.features, permutations=args.permutations, kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size, featurizer=args.featurizer, overrides=args.overrides,
        seed=args.seed, device=args.device)
    metrics = evaluate(request)
    print_table(metrics, f"{args.fake} vs {args.real}")
    if args.log_to:
        from zerosum import tracking

        params = {"real": str(args.real), "fake": str(args.fake), "num_samples": args.num_samples,
                  "features": args.features, "metrics": ",".join(request.metrics)}
        run = tracking.TrackedRun.start(tracking.resolve_tracking_uri(), args.log_to, "eval", params, "",
                                        tags={"zerosum.kind": "eval"})
        run.log_metrics(metrics, step=0)
        run.end()
        print(f"logged to MLflow run {run.run_id} in experiment '{args.log_to}'")
    return 0


def register_commands(commands) -> None:
    parser = commands.add_parser("eval", help="score generated samples against real data (FID, KID, MMD, modes)")
    parser.add_argument("--real", type=Path, required=True, help="job spec (YAML) or folder of real images")
    parser.add_argument("--fake", required=True, help="model URI (models:/NAME@alias, runs:/ID/generator) or folder")
    parser.add_argument("--metrics", default="fid,kid,mmd", help=f"comma-separated: {','.join(DISTRIBUTION_METRICS)}")
    parser.add_argument("--features", default="auto", choices=FEATURE_KINDS)
    parser.add_argument("--featurizer", type=Path, help="classifier weights (default: cached, trained if missing)")
    parser.add_argument("-n", "--num-samples", type=positive_int, default=EVAL_NUM_SAMPLES,
                        help=f"fakes and reals to compare (default {EVAL_NUM_SAMPLES})")
    parser.add_argument("--permutations", type=positive_int, default=MMD_PERMUTATIONS,
                        help=f"MMD permutation-test permutations (default {MMD_PERMUTATIONS})")
    parser.add_argument("--kid-subsets", type=positive_int, default=KID_SUBSETS,
                        help=f"KID subsets, as torch-fidelity's --kid-subsets (default {KID_SUBSETS})")
    parser.add_argument("--kid-subset-size", type=positive_int, default=KID_SUBSET_SIZE,
                        help=f"samples per KID subset, as torch-fidelity's --kid-subset-size (default {KID_SUBSET_SIZE}; "
                             "capped at the sample count)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    add_set_argument(parser)
    parser.add_argument("--log-to", metavar="EXPERIMENT", help="also record the numbers as an MLflow run")
    parser.set_defaults(handler=cmd_eval)
