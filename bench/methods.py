"""Each method's job beside the plain `gan` baseline: quality, coverage, and images/s.

Runs the named jobs one after another on this machine (each as `zerosum run` would, in a
temporary MLflow store), then prints one Markdown row per job:
- ring8 / grid25: modes covered, high-quality fraction, MMD^2 (last eval);
- MNIST: classifier-FID and classes covered at each eval round;
- InfoGAN: the categories' matched accuracy (bench/infogan_categories.py's measure);
- translation (pix2pix, cyclegan): PSNR, SSIM, accuracy and FID, beside the task's baseline
  (baseline/*: bicubic, mean fill, the untranslated input), and the run's final triplet grid
  copied into --pictures;
- all: `perf/real_samples_per_s` (median over logging windows, warm-up dropped) and wall s.

    .venv/bin/python bench/methods.py                        # the toy set (about 6 min)
    .venv/bin/python bench/methods.py --set mnist            # the MNIST set (long: see --rounds)
    .venv/bin/python bench/methods.py jobs/mnist-gmmn.yaml --rounds 1000 --workers 1
    .venv/bin/python bench/methods.py jobs/mnist-diffaug.yaml --override augment.policy=""  # its baseline
    .venv/bin/python bench/methods.py --set translation --workers 1 --pictures docs/img

`--rounds` caps every job's max_rounds (evals keep their own cadence); `--workers` sets
scaling.num_workers. The numbers are printed, never asserted: they are measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOB_SETS = {
    "toy": ["ring8-mlp", "ring8-pacgan", "ring8-r3gan", "grid25-pacgan"],
    "mnist": ["mnist-dcgan", "mnist-sngan", "mnist-diffaug", "mnist-gmmn", "mnist-mmdgan", "mnist-infogan"],
    "translation": ["mnist-superres-pix2pix", "mnist-complete-pix2pix", "fashion-superres-pix2pix",
                    "digits-to-mnist-cyclegan", "mnist-staged"],
}
SHOWN = ("eval/modes", "eval/hq_fraction", "eval/mmd2", "eval/fid", "eval/classes_covered", "eval/class_kl",
         "eval/psnr", "eval/ssim", "eval/accuracy")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jobs", nargs="*", type=Path, help="job specs (default: the --set)")
    parser.add_argument("--set", dest="job_set", choices=sorted(JOB_SETS), default="toy")
    parser.add_argument("--rounds", type=int, help="cap on schedule.max_rounds")
    parser.add_argument("--workers", type=int, help="scaling.num_workers")
    parser.add_argument("--override", action="append", default=[], metavar="A.B=VALUE",
                        help="a field for every job, as zerosum run --set (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--pictures", type=Path, help="copy each run's final samples.png here, as <job>.png")
    return parser.parse_args()


def job_overrides(args: argparse.Namespace, workdir: Path) -> list[str]:
    """--set overrides shared by every job: a private store, no registration, the caps asked for."""
    overrides = [f"tracking.storage_path={workdir / 'runs'}", "tracking.register_as=null"]
    if args.workers:
        overrides.append(f"scaling.num_workers={args.workers}")
    return overrides + args.override


def capped(spec, max_rounds: int | None):
    """The spec with max_rounds lowered to the cap (never raised), evals and checkpoints kept."""
    if not max_rounds or spec.schedule.max_rounds <= max_rounds:
        return spec
    return spec.model_copy(update={"schedule": spec.schedule.model_copy(update={"max_rounds": max_rounds})})


def eval_histories(run, keys: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """{key: [(round, value)]} for the keys the run logged."""
    histories = {key: list(zip(*run.metric_history(key))) for key in keys}
    return {key: history for key, history in histories.items() if history}


def infogan_accuracy(run, per_code: int = 500) -> float:
    """Matched accuracy of the run's logged generator's categories (see bench/infogan_categories.py)."""
    from infogan_categories import category_accuracy

    accuracy, _ = category_accuracy(f"runs:/{run.run_id}/generator", per_code, "mnist")
    return accuracy


def measure(path: Path, args: argparse.Namespace, workdir: Path) -> dict:
    from zerosum.config import load_job
    from zerosum.train.driver import run_job

    spec = capped(load_job(path, job_overrides(args, workdir)), args.rounds)
    start = time.perf_counter()
    result = run_job(spec)
    wall_s = time.perf_counter() - start
    _, rates = result.run.metric_history("perf/real_samples_per_s")
    row = {
        "job": spec.name, "method": spec.method, "rounds": result.rounds_done, "workers": spec.scaling.num_workers,
        "wall_s": round(wall_s, 1), "images_per_s": round(statistics.median(rates[1:] or rates), 1),
        "final": {k: v for k, v in result.final_metrics.items() if k in SHOWN},
        "history": eval_histories(result.run, ("eval/fid", "eval/classes_covered", "eval/modes", "eval/accuracy")),
        "baseline": {k: v for k, v in result.run.latest_metrics().items() if k.startswith("baseline/")},
    }
    if args.pictures:
        args.pictures.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.grid_path, args.pictures / f"{spec.name}.png")
    if spec.method == "infogan":
        row["category_accuracy"] = round(infogan_accuracy(result.run), 4)
    return row


def markdown(rows: list[dict]) -> str:
    header = "| job | method | rounds | workers | images/s | wall s | last eval | per eval round |"
    lines = [header, "|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        final = "  ".join(f"{k.removeprefix('eval/')} {v:.4g}" for k, v in r["final"].items())
        if "category_accuracy" in r:
            final += f"  category_accuracy {r['category_accuracy']:.3f}"
        if r.get("baseline"):
            final += "  (" + "  ".join(f"{k} {v:.4g}" for k, v in sorted(r["baseline"].items())) + ")"
        history = "; ".join(
            f"{k.removeprefix('eval/')}: " + ", ".join(f"{s}:{v:.3g}" for s, v in h) for k, h in r["history"].items())
        lines.append(f"| {r['job']} | {r['method']} | {r['rounds']} | {r['workers']} | {r['images_per_s']} "
                     f"| {r['wall_s']} | {final} | {history} |")
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    paths = args.jobs or [REPO / "jobs" / f"{name}.yaml" for name in JOB_SETS[args.job_set]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: job spec not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="zerosum-methods-") as folder:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        for path in paths:
            rows.append(measure(path, args, Path(folder)))
            print(json.dumps(rows[-1]), flush=True)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
