"""The campaign's champion: the best checkpoint still on disk, registered with alias `champion`.

Each trial stamps the checkpoints it reports with `report.json` (trial, round,
objective); the champion is found by that content, not by folder names, and its
generator is logged into its trial's run as it was at its best report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zerosum import tracking
from zerosum.config import validate_job
from zerosum.tracking import TrackedRun
from zerosum.train import checkpoint as ckpt
from zerosum.tune.campaign import Campaign
from zerosum.tune.schema import OBJECTIVE_KEY, REPORT_FILE, TRAIN_FOLDER, best_entry, eval_metrics


@dataclass
class Champion:
    """The best checkpoint that survived, read from its report.json stamp."""

    trial_id: str
    round: int
    objective: float
    metrics: dict[str, float]
    params: dict[str, Any]
    checkpoint_path: Path
    run_id: str | None = None


def find_champion(folder: Path, mode: str) -> Champion | None:
    """The best stamped checkpoint in the campaign folder (Tune trials and Ray Train runs)."""
    stamps = [*folder.glob(f"trial_*/checkpoint_*/{REPORT_FILE}"),
              *folder.glob(f"{TRAIN_FOLDER}/*/*/{REPORT_FILE}")]
    # Where each entry was stamped: the checkpoint folder is the champion's weights.
    entries = [{**json.loads(stamp.read_text()), "checkpoint": stamp.parent} for stamp in sorted(stamps)]
    best = best_entry(entries, mode)
    if best is None:
        return None
    return Champion(best["trial_id"], int(best["round"]), float(best[OBJECTIVE_KEY]), eval_metrics(best),
                    dict(best["params"]), best["checkpoint"])


def register_champion(campaign: Campaign, parent: TrackedRun, champion: Champion) -> str:
    """Log the champion's generator (as it was at its best report) into its trial's run,
    register it under the campaign's model name and point `champion` at it."""
    from zerosum.serving import log_checkpoint_generator

    state = ckpt.load_weights(champion.checkpoint_path / ckpt.STATE_FILE)
    spec = validate_job(yaml.safe_load(state["config_yaml"]), source="champion checkpoint", check_paths=False)
    about = {"campaign": campaign.name, "trial_id": champion.trial_id, "objective": champion.objective,
             "round": champion.round}
    run = TrackedRun(parent.tracking_uri, champion.run_id) if champion.run_id else parent
    version = log_checkpoint_generator(spec, state, run, campaign.register_as, "champion", about)
    tags = {"zerosum.campaign": campaign.name, "zerosum.trial_id": champion.trial_id,
            "zerosum.objective": f"{champion.objective:.6g}",
            "zerosum.objective_metric": campaign.spec.objective.describe(), "zerosum.round": champion.round,
            "zerosum.parent_run_id": parent.run_id}
    tracking.set_model_version_tags(parent.tracking_uri, campaign.register_as, version, tags)
    parent.set_tags({"zerosum.champion_trial": champion.trial_id, "zerosum.champion_version": version})
    return f"models:/{campaign.register_as}@champion"
