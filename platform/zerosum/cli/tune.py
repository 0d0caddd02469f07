"""`zerosum tune CAMPAIGN.yaml [--set ...] [--resume] [--dry-run]`: Ray Tune campaigns.

The campaign itself lives in `zerosum.tune` (see its package docstring).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from zerosum.cli.common import add_set_argument


def cmd_tune(args: argparse.Namespace) -> int:
    from zerosum.tune.campaign import describe_campaign, load_campaign

    campaign = load_campaign(args.spec, args.overrides)
    if args.dry_run:
        print(describe_campaign(campaign))
        return 0
    from zerosum.tune.driver import run_campaign

    # Trials checkpoint at every evaluation and Tune snapshots its state each time it
    # prunes checkpoints; on local storage that is cheap, so its warning is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

    result = run_campaign(campaign, resume=args.resume, verbose=args.verbose)
    print(summary_text(campaign, result))
    return 0


def summary_text(campaign, result) -> str:
    counts = {}
    for row in result.rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    lines = [f"campaign folder: {result.folder}",
             f"mlflow run:      {result.parent.run_id} ({len(result.rows)} trials: "
             + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + ")",
             f"wall time:       {result.wall_s:.0f} s"]
    if result.exploits:
        lines.append(f"pbt exploits:    {result.exploits}")
    champion = result.champion
    if champion is not None:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in champion.params.items())
        evals = ", ".join(f"{k} {v:.4g}" for k, v in sorted(champion.metrics.items()))
        lines += [f"champion:        trial {champion.trial_id}, objective {champion.objective:.4g} "
                  f"at round {champion.round} ({shown})",
                  f"                 {evals}" if evals else "",
                  f"model:           {result.model_uri}" if result.model_uri else ""]
    lines += [f"note:            {note}" for note in result.notes]
    return "\n".join(line for line in lines if line)


def register_commands(commands) -> None:
    tune = commands.add_parser("tune", help="run a Ray Tune campaign over a job spec's fields")
    tune.add_argument("spec", type=Path, help="campaign spec (YAML with a campaign: section)")
    add_set_argument(tune, "override a base job field (schedule.max_rounds=500) or a campaign field "
                           "(campaign.num_samples=4); repeatable")
    tune.add_argument("--resume", action="store_true", help="continue the latest run of this campaign")
    tune.add_argument("--dry-run", action="store_true", help="print the resolved search space and trial count")
    tune.set_defaults(handler=cmd_tune)
