"""What in-training evals cost: the loop's `perf/eval_s` and `perf/eval_share` (EvalMeter),
in-process on a LocalSession, against the wall clock of the reports around them."""

from __future__ import annotations

import time

from zerosum.config import job_to_dict, load_job
from zerosum.train.loop import EvalMeter, train_worker
from zerosum_testing import JOBS, LocalSession

SLEEP_S = 0.05


def test_the_meter_adds_every_timed_block_and_divides_by_the_time_since_it_began():
    outside_start = time.perf_counter()
    meter = EvalMeter()
    for _ in range(2):
        with meter.timing():
            time.sleep(SLEEP_S)
    time.sleep(SLEEP_S)  # untimed: in the share's denominator only
    reading = meter.read()
    outside_s = time.perf_counter() - outside_start
    # sleep() sleeps at least as long as asked; the untimed sleep keeps the share under 1.
    assert reading["perf/eval_s"] >= 2 * SLEEP_S
    assert reading["perf/eval_share"] < 1
    # The meter's own span began after outside_start and ended before outside_s was read.
    assert reading["perf/eval_share"] >= reading["perf/eval_s"] / outside_s


def test_a_timed_block_that_raises_still_counts():
    meter = EvalMeter()
    try:
        with meter.timing():
            time.sleep(SLEEP_S)
            raise RuntimeError("an eval that failed")
    except RuntimeError:
        pass
    assert meter.read()["perf/eval_s"] >= SLEEP_S


def test_every_eval_report_carries_the_cost_so_far_and_it_grows_by_no_more_than_the_time_between():
    spec = load_job(JOBS / "ring8-mlp.yaml", ["data.num_samples=2000", "schedule.batch_size=64",
                                              "schedule.max_rounds=30", "schedule.log_every_rounds=5",
                                              "eval.every_rounds=10", "checkpoint.every_rounds=10",
                                              "eval.num_samples=256", "eval.metrics=[modes, mmd]"])
    session = LocalSession()
    train_worker({"job": job_to_dict(spec), "tracking_uri": None, "run_id": None, "fault": None}, session)
    reports = session.reports
    assert [r["round"] for r in reports] == [10, 20, 30]
    costs = [r["perf/eval_s"] for r in reports]
    assert costs[0] > 0 and all(b > a for a, b in zip(costs, costs[1:]))
    for before, after in zip(reports, reports[1:]):
        # The eval between two reports ran inside the wall time between them.
        assert after["perf/eval_s"] - before["perf/eval_s"] <= after["time"] - before["time"]
    assert all(0 < r["perf/eval_share"] < 1 for r in reports)
