"""Datasets larger than memory, streamed through Ray Data (`data.streaming: true`).

The in-memory path (`zerosum.data`) decodes a whole dataset into one tensor on every
worker. The streamed path decodes it on Ray Data's CPU tasks instead, a block at a time,
and hands each Ray Train worker its shard (`ray.train.get_dataset_shard`), so a worker
only ever holds the batches in flight:

    driver:  streamed_dataset(data) -> a Ray Dataset of {"image": uint8 (C, S, S), "label"}
             TorchTrainer(datasets={STREAM: ...}, dataset_config=stream_config())
    worker:  StreamedBatches(shard, ...) -> {"x": float32 (B, C, S, S), "y": int64 (B,)}

Both sources are Ray Data sources of zerosum's own (`block_datasource`), whose read tasks
decode one block each, on CPU tasks:
- an image folder: its files in a seeded order, decoded by `zerosum.data.decode_image`, the
  in-memory path's own decoder, so that both paths yield the same pixels
  (`ray.data.read_images` resizes before it converts to greyscale, so its pixels differ, and
  it asks the filesystem for every file's size before it reads one);
- the IDX files of MNIST and Fashion-MNIST: ranges of rows, in a seeded order, read without
  decoding the rest of the file (a gzipped file is inflated once per node, into the cache).

An epoch is one pass over the rows: the blocks in their seeded order (the same every epoch,
so no all-to-all shuffle holds the whole dataset back before the first batch), mixed by a
shuffle buffer seeded by the epoch. Ray Data preserves that order (`preserve_order`), so a
resumed run skips the batches it had drawn and continues the epoch where its checkpoint
left it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from zerosum.config import DataSpec, JobSpec
from zerosum.data import (
    IDX_FILES,
    IDX_HEADER_MAX_BYTES,
    Dataset,
    decode_image,
    describe_dataset,
    find_idx_file,
    folder_files,
    folder_label,
    idx_header,
    open_idx,
    scale_pixels,
)
from zerosum.errors import DataError
from zerosum.files import atomic_write, cache_dir
from zerosum.runtime import ray_units

STREAM = "train"  # the name of the streamed dataset, for the trainer and get_dataset_shard
IDX_ROWS_PER_BLOCK = 2_000  # 1.6 MB of MNIST per read task: small blocks, a few in flight
FOLDER_FILES_PER_BLOCK = 256  # files one read task decodes
SHUFFLE_BUFFER_BATCHES = 16  # the shuffle buffer holds this many batches of rows


# --------------------------------------------------------------------------- sources


def idx_shape(path: Path) -> tuple[tuple[int, ...], int]:
    """(shape, data offset) of an IDX file, from its header alone."""
    with open_idx(path) as f:
        return idx_header(f.read(IDX_HEADER_MAX_BYTES), path)


def seekable_idx(path: Path) -> Path:
    """An IDX file a read can seek in: `path` itself, or for a .gz file an inflated copy in
    zerosum's cache folder on this node (`idx/<name>-<bytes>-<mtime ns>`), written once,
    atomically, by the first read task that needs it.

    gzip cannot seek without inflating everything before the offset, so reading block k of
    the .gz itself inflated k blocks: an epoch of 30 MNIST blocks inflated the file 15.5
    times over. Two tasks that race write the same bytes, and the rename keeps one."""
    if path.suffix != ".gz":
        return path
    stat = path.stat()
    copy = cache_dir() / "idx" / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}"
    if not copy.is_file():
        with open_idx(path) as source:
            atomic_write(copy, lambda handle: shutil.copyfileobj(source, handle))
    return copy


def read_idx_rows(path: Path, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of an IDX file, uint8 (stop - start, *row shape), read from the
    file's seekable copy (`seekable_idx`)."""
    shape, offset = idx_shape(path)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64))
    with open(seekable_idx(path), "rb") as f:
        f.seek(offset + start * row_bytes)
        raw = f.read((stop - start) * row_bytes)
    if len(raw) != (stop - start) * row_bytes:
        raise DataError(f"{path}: ends before row {stop} its header promises")
    return np.frombuffer(raw, dtype=np.uint8).reshape(stop - start, *shape[1:])


def idx_paths(data: DataSpec, split: str = "train") -> tuple[Path, Path]:
    """The (images, labels) IDX files of an MNIST-style dataset's split."""
    image_stem, label_stem = IDX_FILES[split]
    root = Path(data.root)
    return find_idx_file(root, data.name, image_stem), find_idx_file(root, data.name, label_stem)


def block_datasource(name: str, blocks: list, rows_of, read_block, row_bytes: int):
    """A Ray Data source of one read task per block: task i reads `blocks[i]` (a small
    description: a row range, a list of files) by `read_block(blocks[i])` -> {"image": uint8
    (n, C, H, W), "label": int64 (n,)}, n = rows_of(blocks[i]). A task carries its own block
    only (not the whole list, which for a large folder is megabytes pickled per task), and
    the reads stream, a few blocks in flight at a time."""
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockAccessor, BlockMetadata

    def task(block, per_task_row_limit) -> ReadTask:
        rows = rows_of(block)
        metadata = BlockMetadata(num_rows=rows, size_bytes=rows * (row_bytes + 8), exec_stats=None)
        return ReadTask(lambda: [BlockAccessor.batch_to_block(read_block(block))], metadata,
                        per_task_row_limit=per_task_row_limit)

    class BlockDatasource(Datasource):
        def get_name(self) -> str:
            return name

        def estimate_inmemory_data_size(self) -> int:
            return sum(rows_of(block) for block in blocks) * (row_bytes + 8)

        def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list:
            return [task(block, per_task_row_limit) for block in blocks]

    return BlockDatasource()


def seeded_order(count: int, seed: int) -> list[int]:
    """A permutation of range(count), the same for every epoch and process given the seed."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()


def idx_source(data: DataSpec, seed: int):
    """An IDX dataset's training split: blocks of IDX_ROWS_PER_BLOCK consecutive rows, read in
    a seeded order (the files' own order is by writer; the shuffle buffer mixes within)."""
    images_path, labels_path = idx_paths(data)
    rows = stream_rows(data)
    starts = range(0, rows, IDX_ROWS_PER_BLOCK)
    blocks = [(starts[i], min(starts[i] + IDX_ROWS_PER_BLOCK, rows)) for i in seeded_order(len(starts), seed)]

    def read_block(block: tuple[int, int]) -> dict[str, np.ndarray]:
        return {"image": read_idx_rows(images_path, *block)[:, None],
                "label": read_idx_rows(labels_path, *block).astype(np.int64)}

    row_bytes = int(np.prod(idx_shape(images_path)[0][1:]))
    return block_datasource(f"idx({data.name})", blocks, lambda block: block[1] - block[0], read_block, row_bytes)


def folder_source(data: DataSpec, seed: int):
    """A folder's images, its files in a seeded order, in blocks of FOLDER_FILES_PER_BLOCK
    decoded by `zerosum.data.decode_image` on the read tasks."""
    root = Path(data.root)
    files, classes = folder_files(root)
    # data.limit keeps the first files in sorted order, as the in-memory path does, then shuffles.
    files = files[: data.limit or len(files)]
    files = [files[i] for i in seeded_order(len(files), seed)]
    # Each block: its files and their labels, worked out here so that a task needs no more.
    blocks = [[(str(p), folder_label(p, root, classes)) for p in files[i:i + FOLDER_FILES_PER_BLOCK]]
              for i in range(0, len(files), FOLDER_FILES_PER_BLOCK)]
    channels, side = data.channels, data.image_size

    def read_block(block: list[tuple[str, int]]) -> dict[str, np.ndarray]:
        return {"image": np.stack([decode_image(path, channels, side) for path, _ in block]),
                "label": np.array([label for _, label in block], dtype=np.int64)}

    return block_datasource("folder", blocks, len, read_block, channels * side * side)


def streamed_dataset(data: DataSpec, seed: int):
    """The training split of `data` as a Ray Dataset of {"image": uint8 (C, S, S), "label"},
    its blocks in an order seeded by `seed`, the same in every epoch."""
    import ray.data

    source = folder_source(data, seed) if data.name == "folder" else idx_source(data, seed)
    dataset = ray.data.read_datasource(source)
    # Iterated directly (a single-process trial), the order must hold too; the dataset's own
    # context is a copy, so this changes nothing else. Ray Train sets it from stream_config.
    dataset.context.execution_options.preserve_order = True
    return dataset


def stream_rows(data: DataSpec) -> int:
    """Rows in the streamed training split: from the IDX header or the file list, no decoding."""
    if data.name == "folder":
        count = len(folder_files(Path(data.root))[0])
    else:
        (count, *_), _ = idx_shape(idx_paths(data)[0])
    return min(count, data.limit or count)


def stream_description(data: DataSpec) -> Dataset:
    """The streamed dataset as the loop's `Dataset` of no rows: its sample shape and class count
    (what the models and the evaluator are built from), without a pixel read."""
    shape, num_classes = describe_dataset(data)
    return Dataset(torch.empty(0, *shape), torch.empty(0, dtype=torch.int64), num_classes)


def stream_config():
    """The trainer's DataConfig: the driver's execution options with the order preserved, so
    that an epoch's batches come in the same order after a restart."""
    import copy

    from ray.data.context import DataContext
    from ray.train import DataConfig

    options = copy.deepcopy(DataContext.get_current().execution_options)
    options.preserve_order = True
    return DataConfig(execution_options=options)


def spare_cpu_problem(cluster_cpus: float, held_cpus: float, holders: str, taken: str, remedy: str) -> str | None:
    """Why Ray Data could not read streamed data on this cluster, or None: what trains (a run's
    Ray Train workers, a campaign's trials) holds `held_cpus` of `cluster_cpus`, and Ray Data's
    read and decode tasks need a whole CPU besides. Without one they wait for ever, and training
    hangs at round 0. Tune's placement groups do not take them in: with the trials holding every
    CPU, even a trial whose group held a spare bundle never got a block (docs/speed.md).

    holders: who holds the CPUs ("workers", "trials"); taken: how `held_cpus` adds up, in the
    fields that set it; remedy: what to change, and to what."""
    if ray_units(cluster_cpus - held_cpus) >= ray_units(1):
        return None
    return (f"data.streaming: Ray Data needs a CPU the {holders} do not hold; the cluster has {cluster_cpus:g}, "
            f"{taken}. {remedy}")


def run_cpu_problem(spec: JobSpec, cluster_cpus: float) -> str | None:
    """`spare_cpu_problem` for `zerosum run`: its Ray Train workers hold their CPUs."""
    if not spec.data.streaming:
        return None
    scaling = spec.scaling
    held = scaling.num_workers * scaling.cpus_per_worker
    return spare_cpu_problem(cluster_cpus, held, "workers",
                             f"scaling takes {held:g} ({scaling.num_workers} workers x {scaling.cpus_per_worker:g})",
                             "Lower scaling.num_workers or scaling.cpus_per_worker, or add CPUs")


# --------------------------------------------------------------------------- batching


class StreamedBatches:
    """Endless batches of this worker's shard of a streamed dataset, as {"x", "y"}: the
    streamed twin of `zerosum.data.ShardedBatches`, with the same `start_batch`.

    shard: a Ray DataIterator (a Ray Train worker's `get_dataset_shard`) or a Ray Dataset
    (a single-process Tune trial). Ray Train splits an epoch's rows equally (`equal=True`),
    rows // workers each, so every rank runs the same number of batches per epoch.
    """

    def __init__(self, shard, rows: int, batch_size: int, world_size: int, seed: int, scale: str):
        if rows < batch_size * world_size:
            raise DataError(f"schedule.batch_size: {batch_size} x {world_size} workers needs at least that many "
                            f"samples, the dataset has {rows}")
        self.shard, self.rows, self.batch_size = shard, rows, batch_size
        self.world_size, self.seed, self.scale = world_size, seed, scale
        self.start_batch = 0

    def batches_per_epoch(self) -> int:
        """Whole batches of this worker's rows // world_size rows."""
        return self.rows // self.world_size // self.batch_size

    def epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch's batches, uint8 images scaled, in the order `seed` and `epoch` fix."""
        batches = self.shard.iter_torch_batches(
            batch_size=self.batch_size, drop_last=True, device="cpu", prefetch_batches=2,
            local_shuffle_buffer_size=SHUFFLE_BUFFER_BATCHES * self.batch_size,
            local_shuffle_seed=self.seed * 100_003 + epoch)
        for batch in batches:
            yield {"x": scale_pixels(batch["image"], self.scale), "y": batch["label"]}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch, skip = divmod(self.start_batch, self.batches_per_epoch())
        while True:
            for index, batch in enumerate(self.epoch(epoch)):
                if index >= skip:
                    yield batch
            epoch, skip = epoch + 1, 0
