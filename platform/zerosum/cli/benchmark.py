"""`zerosum benchmark SUITE [--seeds N] [--rows NAME ...] [--set ...]` and `zerosum benchmark --report`.

A suite (`benchmarks/*.yaml`) trains its rows on its seeds, scores them with a paper's
protocol and writes a table beside the published rows (see `zerosum.benchmark`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zerosum.cli.common import add_set_argument
from zerosum.errors import ConfigError

DEFAULT_OUT = Path("runs/benchmarks")
DEFAULT_RESULTS_PAGE = Path("docs/results.md")


def cmd_benchmark(args: argparse.Namespace) -> int:
    if args.report:
        if args.suite is not None:
            raise ConfigError("--report collects the latest tables; give it no SUITE")
        return report(args)
    if args.suite is None:
        raise ConfigError("benchmark: give a SUITE file (benchmarks/*.yaml), or --report")
    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {args.seeds}")
    from zerosum.benchmark.suite import load_suite, select_rows, split_overrides

    suite_sets, job_sets = split_overrides(args.overrides)
    suite = load_suite(args.suite, suite_sets)
    if args.rows:
        suite = select_rows(suite, args.rows)
    if args.seeds is not None and args.seeds > len(suite.spec.seeds):
        raise ConfigError(f"--seeds: {suite.source.name} reports {len(suite.spec.seeds)} seeds; got {args.seeds}")
    if args.dry_run:
        seeds = suite.spec.seeds[: args.seeds] if args.seeds else suite.spec.seeds
        print(f"suite {suite.name}: {suite.spec.protocol.kind} on {suite.spec.protocol.data}, seeds {seeds}")
        for row in suite.spec.rows:
            print(f"  {row.name}: {row.job}" + (f", tuned by {row.tune}" if row.tune else ""))
        print(f"  published rows: {len(suite.published)}")
        return 0
    import os

    from zerosum.benchmark.results import TABLE_MD
    from zerosum.benchmark.runner import run_suite

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    result = run_suite(suite, job_sets, args.out, args.seeds, verbose=args.verbose)
    print((Path(result.folder) / TABLE_MD).read_text())
    print(f"benchmark folder: {result.folder}")
    print(f"mlflow run:       {result.meta.get('mlflow_run')}")
    print(f"wall time:        {result.meta['wall_s']:.0f} s")
    print(f"to keep it as a record and on {DEFAULT_RESULTS_PAGE}: zerosum benchmark --report --out {args.out}")
    return 0


def report(args: argparse.Namespace) -> int:
    """Keep the finished runs under --out as records in <suites>/results/, then write the
    page from every record (and the tables kept from before records, earlier.md)."""
    from zerosum.benchmark.page import EARLIER_FILE, RECORDS_FOLDER, import_runs, load_records, results_page
    from zerosum.files import atomic_write_text

    records_folder = args.suites / RECORDS_FOLDER
    added = import_runs(args.out, records_folder) if args.out.is_dir() else []
    records = load_records(records_folder) if records_folder.is_dir() else []
    earlier_path = records_folder / EARLIER_FILE
    earlier = earlier_path.read_text() if earlier_path.is_file() else ""
    if not records and not earlier:
        raise ConfigError(f"--report: no suite runs under {args.out} and no records in {records_folder} "
                          f"(run `zerosum benchmark SUITE` first, or pass --out)")
    atomic_write_text(results_page(records, args.suites, earlier), args.results)
    for path in added:
        print(f"kept the run as a record: {path}")
    print(f"wrote {args.results} from {len(records)} records")
    return 0


def register_commands(commands) -> None:
    bench = commands.add_parser("benchmark", help="train a suite's rows on its seeds and table them beside "
                                                  "the published results",
                                description="Train every row of a benchmark suite on every seed (Ray runs the "
                                            "seeds side by side), score each seed's final generator with the "
                                            "suite's published protocol, and write a table (Markdown, CSV, plot, "
                                            "MLflow runs) beside the published rows.")
    bench.add_argument("suite", type=Path, nargs="?", help="suite file (benchmarks/*.yaml)")
    bench.add_argument("--seeds", type=int, help="report only the suite's first N seeds")
    bench.add_argument("--rows", action="append", metavar="NAME",
                       help="train and table only this row (its name in the suite file); repeatable")
    add_set_argument(bench, "override every row's job field (schedule.max_rounds=200) or a suite field "
                            "(suite.protocol.num_samples=500); repeatable")
    bench.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"suite folders (default {DEFAULT_OUT})")
    bench.add_argument("--dry-run", action="store_true", help="check the suite and print its rows")
    bench.add_argument("--report", action="store_true",
                       help=f"keep the runs under --out as records in <suites>/results/ and write --results "
                            f"({DEFAULT_RESULTS_PAGE}): every row from the newest run that trained it")
    bench.add_argument("--results", type=Path, default=DEFAULT_RESULTS_PAGE, help="the page --report writes")
    bench.add_argument("--suites", type=Path, default=Path("benchmarks"),
                       help="folder of the suites, published.yaml and the records (results/), for --report "
                            "(default benchmarks)")
    bench.set_defaults(handler=cmd_benchmark)
