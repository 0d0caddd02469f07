"""Eval cost: the share of each job's training time that its in-training evals take.

Every run logs `perf/eval_s` and `perf/eval_share` at each eval (zerosum.train.loop's
EvalMeter). Running every job in `jobs/` to its end would take hours on a CPU, so this
projects each job's share from a short run of the same job, in this process (the loop on
a LocalSession: no Ray, one process, the CPU; logged to an MLflow store in a temporary
folder, as a run logs):
- the short run trains 3 x `--every` rounds with an eval every `--every` rounds;
- s/round: training only, from the throughput meter (`perf/rounds_per_s`);
- s/eval: the mean of the 2nd and 3rd evals (`perf/eval_s` differences);
- setup s: building the evaluator, the first eval's excess over s/eval included (the real
  side's features come from the disk cache when an earlier run computed them);
- share: n_evals x s/eval over (total_rounds x s/round + n_evals x s/eval), the job's own
  schedule and cadence. Data loading, model building and checkpoints are left out of the
  denominator, so the share is, if anything, high.

A 2-worker job splits both the training batch's work and the eval's samples between its
workers, so the share of one process is close to its own; a run's logged
`perf/eval_share` is the measured figure. Aim: 10% or less by default; reported, not
asserted.

    .venv/bin/python bench/eval_share.py [--every 10] [jobs/mnist-dcgan.yaml ...]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AIM_SHARE = 0.10


def is_campaign(path: Path) -> bool:
    from zerosum.config import read_yaml

    return "campaign" in read_yaml(path)


def eval_count(total_rounds: int, every_rounds: int | None) -> int:
    """Evals in a whole run: every `every_rounds` rounds, and always at the last round."""
    if not every_rounds:
        return 1
    return total_rounds // every_rounds + (1 if total_rounds % every_rounds else 0)


def short_run(path: Path, every: int, tracking_uri: str) -> dict[str, float]:
    """Train 3 x `every` rounds of the job in this process, logged to a fresh MLflow run
    (so an eval draws and logs its sample grid, as in a real run); its per-round and
    per-eval seconds."""
    from zerosum.config import job_to_dict, job_to_yaml, load_job
    from zerosum.evaluation.featurizer import prepare_eval_spec
    from zerosum.tracking import TrackedRun
    from zerosum.train.loop import train_worker
    from zerosum.train.session import LocalSession

    rounds = 3 * every
    spec = prepare_eval_spec(load_job(path, [f"schedule.max_rounds={rounds}", f"eval.every_rounds={every}",
                                             f"schedule.log_every_rounds={every}",
                                             f"checkpoint.every_rounds={rounds}"]))
    session = LocalSession()
    run = TrackedRun.start(tracking_uri, "eval-share", spec.name, {}, job_to_yaml(spec))
    train_worker({"job": job_to_dict(spec), "tracking_uri": tracking_uri, "run_id": run.run_id, "fault": None},
                 session)
    run.end("FINISHED")
    evals = [report["perf/eval_s"] for report in session.reports if "perf/eval_s" in report]
    if len(evals) < 3:
        raise RuntimeError(f"{len(evals)} evals in {rounds} rounds (an early-stopping rule?)")
    per_eval_s = (evals[2] - evals[0]) / 2
    return {"s_per_round": 1 / session.reports[-1]["perf/rounds_per_s"], "s_per_eval": per_eval_s,
            # The first eval's excess; timing noise can make it a hair below 0.
            "setup_s": max(evals[0] - per_eval_s, 0.0)}


def projected_share(spec, measured: dict[str, float]) -> dict[str, float]:
    """The job's whole schedule (`spec`, as its file has it) at the short run's speeds."""
    total = spec.schedule.total_rounds
    evals = eval_count(total, spec.eval.every_rounds)
    train_s, eval_s = total * measured["s_per_round"], evals * measured["s_per_eval"]
    return {"rounds": total, "evals": evals, "train_s": train_s, "eval_s": eval_s,
            "share": eval_s / (train_s + eval_s)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", nargs="*", type=Path, help="job files (default: every job in jobs/)")
    parser.add_argument("--every", type=int, default=10, help="eval cadence of the short runs, rounds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    # Short runs of few samples trip evals' rank-deficiency warnings; only their cost matters here.
    warnings.simplefilter("ignore")
    jobs = args.jobs or sorted(p for p in (REPO / "jobs").glob("*.yaml") if not is_campaign(p))
    print(f"{'job':32} {'rounds':>6} {'evals':>5} {'s/round':>8} {'s/eval':>7} {'setup s':>7} "
          f"{'train s':>8} {'eval s':>7} {'share':>6}")
    from zerosum.config import load_job

    with tempfile.TemporaryDirectory(prefix="eval-share-") as store:
        tracking_uri = f"sqlite:///{store}/mlflow.db"
        for path in jobs:
            spec = load_job(path)
            if not spec.eval.metrics:
                print(f"{path.name:32} no eval metrics: no evals")
                continue
            try:
                measured = short_run(path, args.every, tracking_uri)
            except Exception as err:  # one job's failure should not hide the others' figures
                print(f"{path.name:32} failed: {type(err).__name__}: {str(err).splitlines()[0][:80]}")
                continue
            row = projected_share(spec, measured)
            flag = "" if row["share"] <= AIM_SHARE else "  over the aim"
            print(f"{path.name:32} {row['rounds']:6d} {row['evals']:5d} {measured['s_per_round']:8.4f} "
                  f"{measured['s_per_eval']:7.2f} {measured['setup_s']:7.1f} {row['train_s']:8.0f} "
                  f"{row['eval_s']:7.0f} {row['share']:6.1%}{flag}")
    print(f"aim: share at most {AIM_SHARE:.0%} by default (reported, not asserted); "
          "share = n_evals x s/eval / (rounds x s/round + n_evals x s/eval)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
