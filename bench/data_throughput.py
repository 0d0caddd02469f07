"""Data throughput: MNIST written out as PNGs, read in memory and streamed through Ray Data.

The two paths of a `data.name: folder` job, in one Ray session on this machine:
- in memory (the default): `load_dataset` decodes every PNG into one float32 tensor, then
  `ShardedBatches` draws batches from it;
- streamed (`data.streaming: true`): Ray Data's CPU tasks decode blocks of PNGs, and
  `StreamedBatches` draws batches as the blocks arrive.

Each path is timed over two epochs of batch 64 (no model: the data path alone). Epoch 1 of
the in-memory path includes its decode; its epoch 2 reads the tensor it already holds. The
streamed path decodes again in every epoch, which is what lets it hold only the batches in
flight. Printed: images/s of each epoch and the ratios, streamed / in memory. Aims are
reported, not asserted.

    .venv/bin/python bench/data_throughput.py [--images 20000] [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"


def write_pngs(root: Path, count: int) -> None:
    """The first `count` MNIST training digits as root/<digit>/<index>.png (28x28 greyscale)."""
    from PIL import Image

    from zerosum.config import DataSpec
    from zerosum.streaming import idx_paths, read_idx_rows

    images_path, labels_path = idx_paths(DataSpec(name="mnist", root=MNIST))
    images, labels = read_idx_rows(images_path, 0, count), read_idx_rows(labels_path, 0, count)
    for digit in range(10):
        (root / str(digit)).mkdir(parents=True)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(image).save(root / str(label) / f"{index}.png")


def epochs_images_per_s(make_batches, epochs: int) -> list[float]:
    """Images/s of each of `epochs` passes; the first includes building the batches
    (`make_batches()`, where the in-memory path decodes)."""
    rates, start = [], time.perf_counter()
    batches = make_batches()
    stream = iter(batches)
    for _ in range(epochs):
        images = sum(len(next(stream)["x"]) for _ in range(batches.batches_per_epoch()))
        now = time.perf_counter()
        rates.append(images / (now - start))
        start = now
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000, help="MNIST training digits written as PNGs")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    import ray
    import ray.data

    from zerosum.config import DataSpec
    from zerosum.data import ShardedBatches, load_dataset
    from zerosum.streaming import StreamedBatches, stream_rows, streamed_dataset

    with tempfile.TemporaryDirectory(prefix="zsd.", dir="/tmp") as folder:
        root = Path(folder) / "mnist-png"
        start = time.perf_counter()
        write_pngs(root, args.images)
        print(f"wrote {args.images} PNGs in {time.perf_counter() - start:.1f} s")
        data = DataSpec(name="folder", root=root, image_size=28, channels=1)
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
        ray.data.DataContext.get_current().enable_progress_bars = False  # the table, not progress logs
        # Ray Data's read tasks start their workers (and import torch) on first use: a warm-up
        # read keeps that one-off out of the streamed figures.
        streamed_dataset(data.model_copy(update={"limit": args.batch}), seed=1).take(1)

        def in_memory():
            return ShardedBatches(load_dataset(data), args.batch, rank=0, world_size=1, seed=0)

        def streamed():
            return StreamedBatches(streamed_dataset(data, seed=0), stream_rows(data), args.batch, 1, 0, data.scale)

        memory_rates = epochs_images_per_s(in_memory, epochs=2)
        stream_rates = epochs_images_per_s(streamed, epochs=2)
    print(f"machine: {os.cpu_count()} CPUs; batch {args.batch}; {args.images} 28x28 PNGs; images/s by epoch")
    print(f"{'path':<24}{'epoch 1':>10}{'epoch 2':>10}")
    print(f"{'in memory':<24}{memory_rates[0]:>10.0f}{memory_rates[1]:>10.0f}   (epoch 1 includes the decode)")
    print(f"{'streamed (Ray Data)':<24}{stream_rates[0]:>10.0f}{stream_rates[1]:>10.0f}")
    print(f"ratio streamed / in memory: epoch 1 {stream_rates[0] / memory_rates[0]:.2f}, "
          f"epoch 2 {stream_rates[1] / memory_rates[1]:.2f}")
    sys.stdout.flush()
    os._exit(0)  # past Ray Data's shutdown, whose threads print tracebacks at interpreter exit


if __name__ == "__main__":
    raise SystemExit(main())
