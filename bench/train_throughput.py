"""Training throughput: zerosum on Ray Train workers against a plain PyTorch loop.

Both train the same DCGAN on MNIST (1 D + 1 G step per round, Adam 2e-4), in this
process's session, with the same number of threads. zerosum's figure is
`perf/real_samples_per_s` as its loop logs it (real images per second, over every
worker, over a logging window), with the first window (warm-up, and compilation)
dropped; the plain eager loop is timed the same way, before and after zerosum's runs.
Prints one row per variant with its ratio to the plain eager loop. Targets: eager
zerosum >= 0.95x; compiled >= 1.2x on CPU; bf16 + reduce-overhead >= 2x on GPU.

    .venv/bin/python bench/train_throughput.py [--rounds 300] [--threads 2] [--batch 64]
        [--workers 1] [--variants eager,compile,reduce-overhead] [--gpu] [--bf16]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "mnist"
WINDOW = 20


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300, help="rounds per side (default 300)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both sides (default 2)")
    parser.add_argument("--gpu", action="store_true", help="train on CUDA (NCCL backend for zerosum)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU only)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of the MNIST IDX files")
    parser.add_argument("--batch", type=int, default=64, help="batch per worker (default 64)")
    parser.add_argument("--workers", type=int, default=1, help="Ray Train workers for zerosum (default 1)")
    parser.add_argument("--variants", default="eager,compile",
                        help="comma-separated: eager, compile (torch.compile default mode), reduce-overhead, "
                             "max-autotune (default eager,compile)")
    return parser.parse_args()


COMPILE_MODES = {"compile": "default", "reduce-overhead": "reduce-overhead", "max-autotune": "max-autotune"}


def bench_spec(args: argparse.Namespace, workdir: Path, variant: str = "eager"):
    from zerosum.config import load_job

    compiled = ["scaling.compile=true", f"scaling.compile_mode={COMPILE_MODES[variant]}"] if variant != "eager" else []
    overrides = [
        f"data.root={args.data}", f"scaling.num_workers={args.workers}", f"scaling.use_gpu={str(args.gpu).lower()}",
        f"scaling.cpus_per_worker={args.threads}", f"scaling.precision={'bf16' if args.bf16 else 'fp32'}",
        f"schedule.batch_size={args.batch}", "schedule.d_steps=1", "schedule.g_steps=1", *compiled,
        f"schedule.max_rounds={args.rounds}", f"schedule.log_every_rounds={WINDOW}",
        f"checkpoint.every_rounds={args.rounds}", f"eval.every_rounds={args.rounds}", "eval.metrics=[]",
        "model.ema_decay=null", "tracking.register_as=null", f"tracking.storage_path={workdir / 'runs'}",
    ]
    return load_job(REPO / "jobs" / "mnist-dcgan.yaml", overrides)


def zerosum_images_per_s(spec, workdir: Path) -> float:
    """Median perf/real_samples_per_s over zerosum's logging windows, warm-up window dropped."""
    from zerosum.train.driver import run_job

    result = run_job(spec)
    _, values = result.run.metric_history("perf/real_samples_per_s")
    return statistics.median(values[1:])


def plain_images_per_s(spec, device: torch.device, bf16: bool) -> float:
    """The same models and data, stepped by the textbook loop of step_throughput.plain_round."""
    from step_throughput import plain_round

    from zerosum.data import load_dataset
    from zerosum.train.build import build_models

    torch.manual_seed(0)
    data = load_dataset(spec.data, "train").samples.to(device)
    generator, discriminator = (m.to(device) for m in build_models(spec, (1, 28, 28), 10))
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batch = spec.schedule.batch_size
    use_bf16 = bf16 and device.type == "cuda"
    autocast = partial(torch.autocast, "cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext
    order, cursor, rates = torch.randperm(len(data), device=device), 0, []
    start = time.perf_counter()
    for step in range(1, spec.schedule.total_rounds + 1):
        if cursor + batch > len(order):
            order, cursor = torch.randperm(len(data), device=device), 0
        reals = data[order[cursor: cursor + batch]]
        cursor += batch
        plain_round(generator, discriminator, opt_g, opt_d, reals, autocast)
        if step % WINDOW == 0:
            rates.append(WINDOW * batch / (time.perf_counter() - start))
            start = time.perf_counter()
    return statistics.median(rates[1:])


def main() -> int:
    args = parse_args()
    if not (args.data / "train-images-idx3-ubyte.gz").is_file():
        print(f"error: MNIST IDX files not found in {args.data} (--data)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    device = torch.device("cuda" if args.gpu else "cpu")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v != "eager" and v not in COMPILE_MODES]
    if unknown:
        print(f"error: --variants: unknown {unknown}; allowed: eager, {', '.join(COMPILE_MODES)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="zerosum-bench-") as folder:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(folder) / 'mlflow.db'}")
        spec = bench_spec(args, Path(folder))
        # Plain runs before and after zerosum's, so drift in machine load shows up as a spread.
        plain_before = plain_images_per_s(spec, device, args.bf16)
        ours = {v: zerosum_images_per_s(bench_spec(args, Path(folder), v), Path(folder)) for v in variants}
        plain_after = plain_images_per_s(spec, device, args.bf16)
    plain = (plain_before + plain_after) / 2
    print(f"device: {device}  threads: {args.threads}  rounds: {args.rounds}  batch: {args.batch}  "
          f"bf16: {args.bf16}  zerosum workers: {args.workers}")
    print(f"plain eager PyTorch loop:      {plain:10.1f} images/s  (before {plain_before:.1f}, after {plain_after:.1f})")
    for variant, rate in ours.items():
        print(f"zerosum {variant:<15} {args.workers} w: {rate:10.1f} images/s  ratio to plain eager {rate / plain:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
