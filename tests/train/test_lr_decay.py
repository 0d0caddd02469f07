"""optim.decay: the lrs fall over the run's rounds as torch's own schedulers make them fall,
and the loop trains each round at that lr (its checkpoints carry it)."""

from __future__ import annotations

import pytest
import torch

from zerosum.config import OptimSpec, job_to_dict, load_job
from zerosum.train import checkpoint as ckpt
from zerosum.train.build import lr_decay_factor
from zerosum.train.loop import train_worker
from zerosum_testing import JOBS, LocalSession

TOTAL_ROUNDS = 40
FINAL_FACTOR = 0.25
BASE_LR = 1e-3


def torch_scheduler_lrs(decay: str) -> list[float]:
    """The lr of each of TOTAL_ROUNDS steps under torch's LinearLR or CosineAnnealingLR."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    scheduler = (torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, FINAL_FACTOR, total_iters=TOTAL_ROUNDS)
                 if decay == "linear" else
                 torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, TOTAL_ROUNDS, eta_min=FINAL_FACTOR * BASE_LR))
    lrs = []
    for _ in range(TOTAL_ROUNDS):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_the_factor_is_torch_schedulers_lr_over_the_base_lr(decay):
    spec = OptimSpec(decay=decay, final_factor=FINAL_FACTOR)
    ours = [BASE_LR * lr_decay_factor(spec, r, TOTAL_ROUNDS) for r in range(TOTAL_ROUNDS)]
    # torch's schedulers update the lr by a recurrence in Python floats (float64): 40 steps
    # of it drift by a few ulps of 1e-3, far below 1e-12 absolute.
    assert ours == pytest.approx(torch_scheduler_lrs(decay), rel=0, abs=1e-12)


def test_constant_keeps_the_lr_and_every_decay_starts_at_it():
    assert all(lr_decay_factor(OptimSpec(), r, TOTAL_ROUNDS) == 1.0 for r in range(TOTAL_ROUNDS))
    for decay in ("linear", "cosine"):
        assert lr_decay_factor(OptimSpec(decay=decay, final_factor=FINAL_FACTOR), 0, TOTAL_ROUNDS) == 1.0


def test_the_loop_trains_at_the_decayed_lr_and_checkpoints_it(tmp_path):
    spec = load_job(JOBS / "ring8-mlp.yaml", [
        "data.num_samples=2000", "schedule.batch_size=64", f"schedule.max_rounds={TOTAL_ROUNDS}",
        "schedule.log_every_rounds=10", "eval.every_rounds=20", "checkpoint.every_rounds=20",
        "eval.num_samples=256", "optim.decay=linear", f"optim.final_factor={FINAL_FACTOR}"])
    session = LocalSession(storage=tmp_path)
    train_worker({"job": job_to_dict(spec), "tracking_uri": None, "run_id": None, "fault": None}, session)
    expected = {r: lr_decay_factor(spec.optim, r - 1, TOTAL_ROUNDS) for r in (20, 40)}  # round r trains at r-1 done
    assert {r["round"]: r["optim/lr_factor"] for r in session.reports} == expected
    saved, _ = ckpt.read_checkpoint(tmp_path / session.reports[-1]["folder"], rank=0)
    for side in ("g", "d"):
        lr = saved["optimizers"][side]["param_groups"][0]["lr"]
        # The loop set this very float64 product; only the checkpoint's round trip lies between.
        assert lr == pytest.approx(getattr(spec.optim, side).lr * expected[TOTAL_ROUNDS], rel=1e-12)
    assert expected[TOTAL_ROUNDS] < 1.0
