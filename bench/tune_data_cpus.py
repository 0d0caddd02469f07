"""Can Ray Data's read tasks, started inside a single-process Tune trial, run when the
trials hold every CPU? (Why `zerosum tune` refuses a streamed campaign that leaves none.)

A local Ray of 2 CPUs; each case a Tune run whose trials stream 4,000 MNIST rows through
`zerosum.streaming.streamed_dataset`, as a `trial.mode: single` trial does, and report the
rows they read. Tune's time budget stops a trial that is still waiting for its first block.

    RAY_TMPDIR=/tmp/zsb .venv/bin/python bench/tune_data_cpus.py [--root ../shared/data/mnist]

Measured (Ray 2.60, 2 CPUs, three times): a trial of 1 CPU alone read its rows in 6-9 s,
inside its placement group; two trials of 1 CPU, one trial of 2 CPUs, and one trial whose
placement group held a second 1-CPU bundle for Ray Data each read nothing in 30 s (its
read tasks submitted, none run). The trials run inside their placement groups, which Tune
makes to capture child tasks, but Ray Data gives its tasks a scheduling strategy of its
own (DataContext's "SPREAD"), and a task with its own strategy is not captured: a bundle
reserved in the group is no use to them.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

BUDGET_S = 30  # 5x what the one-trial case took, reading included
ROWS = 4_000


def read_stream(config: dict) -> None:
    """The trial: stream the rows, report how many and how long it took."""
    import ray
    from ray import tune

    from zerosum.config import DataSpec
    from zerosum.streaming import streamed_dataset

    start = time.monotonic()
    data = DataSpec(name="mnist", root=config["root"], limit=ROWS, streaming=True)
    rows = sum(len(batch["label"]) for batch in streamed_dataset(data, seed=0).iter_batches(batch_size=256))
    tune.report({"rows": rows, "read_s": time.monotonic() - start,
                 "in_placement_group": ray.util.get_current_placement_group() is not None})


def cases() -> dict[str, tuple[object, int]]:
    """name -> (a trial's resources, trials), on 2 CPUs."""
    from ray import tune

    return {"1 trial of 1 CPU (1 free)": ({"cpu": 1}, 1),
            "2 trials of 1 CPU (none free)": ({"cpu": 1}, 2),
            "1 trial of 2 CPUs (none free)": ({"cpu": 2}, 1),
            "1 trial of 1 CPU + a 1-CPU bundle in its group": (tune.PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}]), 1)}


def run_case(resources, trials: int, root: str, storage: Path) -> list[dict]:
    from ray import tune

    tuner = tune.Tuner(tune.with_resources(tune.with_parameters(read_stream), resources),
                       param_space={"root": root},
                       tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=trials,
                                                   time_budget_s=BUDGET_S),
                       run_config=tune.RunConfig(storage_path=str(storage), verbose=0))
    return [result.metrics or {} for result in tuner.fit()]


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/mnist"))
    args = parser.parse_args()
    # Ray's workers import zerosum from the source root, as a run's do.
    os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "platform")
    storage = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "tune-data-cpus"
    for name, (resources, trials) in cases().items():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        start = time.monotonic()
        reports = run_case(resources, trials, args.root, storage)
        read = [f"{r['rows']} rows in {r['read_s']:.1f} s"
                + (" (in its placement group)" if r["in_placement_group"] else "") if "rows" in r else "nothing"
                for r in reports]
        print(f"{name}: {'; '.join(read)} (wall {time.monotonic() - start:.0f} s)")
        ray.shutdown()


if __name__ == "__main__":
    main()
