"""Start-up: where the seconds of a short `zerosum run` go, fresh and attached to `zerosum up`.

Each figure is the median over `--repeats` runs, fresh and attached alternating so that
load drift hits both. Parts, each timed in its own interpreter:
- imports: `import zerosum.train.driver` (torch, Ray, MLflow and zerosum);
- ray.init: starting (and, at exit, stopping) a local Ray, against connecting to a running head;
- the whole `zerosum run` of a 10-round digits DCGAN on 1 worker (one eval, one checkpoint),
  fresh (it starts and stops its own Ray) and attached to the head of `zerosum up`.
The rest of a run (worker group, dataset, training, eval, logging the model) is the run
minus imports and ray.init. Aims are reported, not asserted.

    .venv/bin/python bench/startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
JOB = [str(REPO / "jobs" / "digits-dcgan.yaml"), "--set", "schedule.max_rounds=10", "--set", "eval.every_rounds=10",
       "--set", "checkpoint.every_rounds=10", "--set", "scaling.num_workers=1"]


def wall_s(command: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zsb.", dir="/tmp") as folder:
        work = Path(folder)
        base = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
                "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "RAY_TMPDIR": str(work)}
        fresh_env = {**base, "ZEROSUM_HOME": str(work / "no-head")}
        head_env = {**base, "ZEROSUM_HOME": str(work / "home")}
        python = [str(BIN / "python"), "-c"]
        zerosum = [str(BIN / "zerosum"), "run", *JOB]
        times: dict[str, list[float]] = {k: [] for k in ("imports", "import ray", "init fresh", "init attach",
                                                         "run fresh", "run attached")}
        subprocess.run([str(BIN / "zerosum"), "up"], env=head_env, check=True, capture_output=True)
        try:
            from zerosum.cluster.local_head import read_head

            os.environ["ZEROSUM_HOME"] = head_env["ZEROSUM_HOME"]
            attach_env = {**base, **read_head().client_env()}
            for _ in range(args.repeats):
                times["imports"].append(wall_s([*python, "import zerosum.train.driver"], fresh_env, work))
                times["import ray"].append(wall_s([*python, "import ray"], fresh_env, work))
                times["init fresh"].append(wall_s([*python, "import ray; ray.init()"], fresh_env, work)
                                           - times["import ray"][-1])
                times["init attach"].append(wall_s([*python, "import ray; ray.init()"], attach_env, work)
                                            - times["import ray"][-1])
                times["run fresh"].append(wall_s(zerosum, fresh_env, work))
                times["run attached"].append(wall_s(zerosum, head_env, work))
        finally:
            subprocess.run([str(BIN / "zerosum"), "down"], env=head_env, capture_output=True)
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"repeats: {args.repeats}  (median s; the ray.init rows are the interpreter's time less `import ray`'s,"
          " and include stopping what it started at exit)")
    print(f"imports (zerosum.train.driver):      {median['imports']:6.1f} s")
    print(f"ray.init, local start:               {median['init fresh']:6.1f} s")
    print(f"ray.init, attach to a running head:  {median['init attach']:6.1f} s")
    print(f"zerosum run, fresh Ray:              {median['run fresh']:6.1f} s  {[round(t, 1) for t in times['run fresh']]}")
    print(f"zerosum run, attached (zerosum up):  {median['run attached']:6.1f} s  "
          f"{[round(t, 1) for t in times['run attached']]}")
    print(f"saved per run by `zerosum up`:       {median['run fresh'] - median['run attached']:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
