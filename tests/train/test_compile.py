"""`scaling.compile`: the players train through torch.compile, and what they checkpoint is
the plain model's state, which loads into an uncompiled model as it is."""

from __future__ import annotations

import pytest
import torch

from zerosum.config import job_to_dict, job_to_yaml, load_job
from zerosum.methods import method_for
from zerosum.tracking import TrackedRun
from zerosum.train import checkpoint as ckpt
from zerosum.train.loop import train_worker
from zerosum_testing import JOBS, LocalSession

# Each test logs to sqlite:///<tmp_path>/mlflow.db: a copy of an empty store, not a new one.
pytestmark = pytest.mark.usefixtures("empty_store_in_tmp_path")


def test_compiled_players_train_and_checkpoint_the_plain_models(tmp_path):
    spec = load_job(JOBS / "ring8-mlp.yaml", [
        "data.num_samples=512", "schedule.batch_size=64", "schedule.max_rounds=2", "eval.every_rounds=2",
        "checkpoint.every_rounds=2", "eval.num_samples=128", "eval.metrics=[modes]", "model.ema_decay=0.99",
        "scaling.compile=true"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = TrackedRun.start(uri, "compile", spec.name, {}, job_to_yaml(spec))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    train_worker({"job": job_to_dict(spec), "tracking_uri": uri, "run_id": run.run_id}, LocalSession(tmp_path))
    # Dynamo captured graphs: G's and D's forwards at least (their backwards go through AOTAutograd).
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2
    saved, _ = ckpt.read_checkpoint(tmp_path / "round_0000002", 0)
    assert saved["rounds_done"] == 2
    plain = method_for(spec).build((2,), 0)
    # strict: no "_orig_mod." prefix, no tensor missing or extra.
    for name, module in plain.items():
        module.load_state_dict(saved["players"][name], strict=True)
    plain["g"].load_state_dict(saved["ema"], strict=True)
