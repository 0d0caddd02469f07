"""data.streaming: the training images read through Ray Data (zerosum.streaming).

The streamed epoch is compared with the in-memory dataset that zerosum.data loads from the
same files: the same multiset of (image, label) pairs, byte for byte, since both decode with
the same code. Then a resumed iterator continues its epoch, and a folder whose decoded size
exceeds a memory cap trains under it (the run's own perf/private_memory_growth_mb).
"""

from __future__ import annotations

import gc
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from zerosum.config import DataSpec, validate_job
from zerosum.data import IDX_FILES, load_dataset, read_idx
from zerosum.errors import ConfigError
from zerosum.streaming import (
    StreamedBatches,
    folder_source,
    idx_paths,
    read_idx_rows,
    run_cpu_problem,
    stream_rows,
)
from zerosum_testing import JOBS, run_cli

MNIST_ROWS = 3_000  # a slice of MNIST's training split: seconds to stream, 47 batches of 64
BATCH = 64


def pixel_pairs(images: torch.Tensor, labels: torch.Tensor, scale: str) -> Counter:
    """The multiset of (uint8 pixels, label) pairs. Pixels come back to uint8 exactly: x was
    k/255 scaled to [-1, 1] in float32, and (x + 1) * 127.5 is within 1e-4 of the integer k,
    far from the rounding boundary at k + 0.5."""
    unit = images if scale == "unit" else (images + 1) * 0.5
    pixels = (unit * 255).round().to(torch.uint8).reshape(len(images), -1).numpy()
    return Counter(zip(map(bytes, pixels), labels.tolist(), strict=True))


def draw(batches: StreamedBatches, count: int, start_batch: int = 0) -> list[dict[str, torch.Tensor]]:
    batches.start_batch = start_batch
    stream = iter(batches)
    try:
        return [next(stream) for _ in range(count)]
    finally:
        # Stop the epoch's Ray Data iterator and its prefetching now, while Ray is up: left
        # to the garbage collector, it can free its blocks after the module's ray.shutdown(),
        # and Ray's core worker then exits the whole pytest process (status 1, no summary).
        stream.close()


@pytest.fixture(scope="module")
def ray_session(shared_ray_home: Path):
    """This process attached to the session's Ray head, as a run's driver is."""
    import ray

    from zerosum.runtime import init_ray

    previous = os.environ.get("ZEROSUM_HOME")
    os.environ["ZEROSUM_HOME"] = str(shared_ray_home)
    try:
        init_ray()
        yield
    finally:
        gc.collect()  # iterators the tests left behind release their blocks while Ray is up
        ray.shutdown()
        if previous is None:
            os.environ.pop("ZEROSUM_HOME", None)
        else:
            os.environ["ZEROSUM_HOME"] = previous


def mnist_spec(shared_data: Path) -> DataSpec:
    return DataSpec(name="mnist", root=shared_data / "mnist", limit=MNIST_ROWS, streaming=True)


def streamed(data: DataSpec, seed: int = 0) -> StreamedBatches:
    from zerosum.streaming import streamed_dataset

    return StreamedBatches(streamed_dataset(data, seed), stream_rows(data), BATCH, 1, seed, data.scale)


# --------------------------------------------------------------------------- without Ray


def test_idx_rows_are_the_files_rows(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSUM_CACHE", str(tmp_path / "cache"))
    images_path, labels_path = idx_paths(DataSpec(name="mnist", root=shared_data / "mnist"))
    assert images_path.name == IDX_FILES["train"][0] + ".gz"
    whole = read_idx(images_path)
    np.testing.assert_array_equal(read_idx_rows(images_path, 59_990, 60_000), whole[59_990:])
    np.testing.assert_array_equal(read_idx_rows(labels_path, 5, 9), read_idx(labels_path)[5:9])
    # Each .gz was inflated once into the cache, and later reads seek in that copy.
    (copy,) = (tmp_path / "cache" / "idx").glob(f"{IDX_FILES['train'][0]}-*")
    written_ns = copy.stat().st_mtime_ns
    np.testing.assert_array_equal(read_idx_rows(images_path, 0, 3), whole[:3])
    assert copy.stat().st_mtime_ns == written_ns
    assert sorted(p.name for p in (tmp_path / "cache" / "idx").iterdir()) == sorted(
        f"{p.stem}-{p.stat().st_size}-{p.stat().st_mtime_ns}" for p in (images_path, labels_path))


def test_streaming_is_refused_where_it_cannot_work():
    job = yaml.safe_load((JOBS / "digits-dcgan.yaml").read_text())
    job["data"] |= {"streaming": True}
    with pytest.raises(ConfigError, match=r"data.streaming: dataset 'digits' is held in memory"):
        validate_job(job, source="spec.yaml")
    job["data"] = {"name": "mnist", "root": "/nonexistent", "streaming": True, "task": "superres", "factor": 2}
    with pytest.raises(ConfigError, match=r"data.streaming: streams the images alone .*data.task superres"):
        validate_job(job, source="spec.yaml", check_paths=False)


def test_a_streamed_job_needs_a_cpu_the_workers_do_not_hold():
    job = yaml.safe_load((JOBS / "digits-dcgan.yaml").read_text())
    job["data"] = {"name": "mnist", "root": "/nonexistent", "streaming": True}
    job["scaling"] |= {"num_workers": 2, "cpus_per_worker": 1}
    spec = validate_job(job, source="digits-dcgan.yaml", check_paths=False)
    assert run_cpu_problem(spec, cluster_cpus=3) is None
    assert run_cpu_problem(spec, cluster_cpus=2) == (
        "data.streaming: Ray Data needs a CPU the workers do not hold; the cluster has 2, scaling takes 2 "
        "(2 workers x 1). Lower scaling.num_workers or scaling.cpus_per_worker, or add CPUs")


def test_a_limited_folder_streams_the_files_the_in_memory_path_loads(tmp_path):
    """data.limit picks the same images on both paths (the first files in sorted order), the
    streamed ones in a seeded order. The read tasks run here, in this process, without Ray."""
    from ray.data.block import BlockAccessor

    write_folder(tmp_path, per_class=5, side=8)
    data = DataSpec(name="folder", root=tmp_path, image_size=8, channels=3, limit=7, streaming=True)
    blocks = [BlockAccessor.for_block(block).to_batch_format("numpy")
              for task in folder_source(data, seed=0).get_read_tasks(parallelism=1) for block in task()]
    pixels = np.concatenate([block["image"] for block in blocks]).reshape(7, -1)
    labels = np.concatenate([block["label"] for block in blocks])
    memory = load_dataset(data.model_copy(update={"streaming": False}))
    assert Counter(zip(map(bytes, pixels), labels.tolist(), strict=True)) == pixel_pairs(memory.samples,
                                                                                        memory.labels, data.scale)
    assert labels.tolist() != memory.labels.tolist()  # shuffled: 5 of class 0 then 2 of class 1 in the files


# --------------------------------------------------------------------------- through Ray Data


@pytest.mark.integration
def test_a_streamed_epoch_is_the_in_memory_dataset(ray_session, shared_data):
    data = mnist_spec(shared_data)
    batches = streamed(data)
    epoch = draw(batches, batches.batches_per_epoch())
    images, labels = torch.cat([b["x"] for b in epoch]), torch.cat([b["y"] for b in epoch])
    memory = load_dataset(data.model_copy(update={"streaming": False}))
    # 3,000 rows in batches of 64: the epoch drops the last 56, as ShardedBatches drops its partial batch.
    assert len(images) == MNIST_ROWS // BATCH * BATCH
    streamed_pairs, memory_pairs = pixel_pairs(images, labels, data.scale), pixel_pairs(memory.samples,
                                                                                      memory.labels, data.scale)
    assert not streamed_pairs - memory_pairs  # every streamed pair is one of the dataset's
    assert sum((memory_pairs - streamed_pairs).values()) == MNIST_ROWS % BATCH
    # Shuffled: not the files' order.
    assert not torch.equal(labels[:BATCH], memory.labels[:BATCH])


@pytest.mark.integration
def test_a_resumed_stream_continues_its_epoch(ray_session, shared_data):
    data = mnist_spec(shared_data)
    per_epoch = streamed(data).batches_per_epoch()
    straight = draw(streamed(data), per_epoch + 5)
    # Stopped after 20 batches, as a checkpoint at that point would record, and started again.
    resumed = draw(streamed(data), per_epoch + 5 - 20, start_batch=20)
    for before, after in zip(straight[20:], resumed, strict=True):
        assert torch.equal(before["x"], after["x"]) and torch.equal(before["y"], after["y"])
    # The next epoch is shuffled anew.
    assert not torch.equal(straight[per_epoch]["y"], straight[0]["y"])


def write_folder(root: Path, per_class: int, side: int) -> None:
    """Two class subfolders of random RGB PNGs (random pixels do not compress: a real size)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(root / name / f"{index}.png")


@pytest.mark.integration
def test_a_folder_larger_than_the_memory_cap_trains_under_it(workdir):
    # 10,000 images of 64x64: few files to write and list, and as many decoded bytes as 40,000 of 32x32.
    side, count = 64, 10_000
    write_folder(workdir / "images", count // 2, side)
    decoded_mb = count * 3 * side * side * 4 / 2**20  # float32, as the in-memory path holds it: 469 MiB
    # The cap: half the decoded size. The in-memory path of 12,000 32x32 images measured 244 MiB of
    # growth for 141 MiB decoded (the float32 tensor, plus the uint8 copy it is made from). Streamed,
    # 189 MiB with 6,000 of these images and 192 with 10,000: the model's, torch's and MLflow's own
    # first allocations, which do not grow with the folder (a module imported before the loop's
    # first reading hid about 50 MiB of them: the heap it freed was reused), so the folder is
    # sized for a clear margin under the cap, not one of a module import's size.
    cap_mb = decoded_mb / 2
    args = ["--set", "data.name=folder", "--set", f"data.root={workdir / 'images'}", "--set", f"data.image_size={side}",
            "--set", "data.channels=3", "--set", "data.streaming=true", "--set", "schedule.max_rounds=15",
            "--set", "schedule.log_every_rounds=5", "--set", "eval.metrics=[]", "--set", "eval.grid_size=16",
            "--set", "checkpoint.every_rounds=15", "--set", "scaling.num_workers=1",
            "--set", "model.g.base_channels=8", "--set", "model.d.base_channels=8",
            "--set", "tracking.register_as=null"]
    out = run_cli("run", str(JOBS / "digits-dcgan.yaml"), *args, cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("digits-dcgan").experiment_id])
    growth = [m.value for m in client.get_metric_history(run.info.run_id, "perf/private_memory_growth_mb")]
    print(f"streamed folder of {decoded_mb:.0f} MiB decoded: private memory growth {max(growth):.0f} MiB, cap {cap_mb:.0f}")
    assert len(growth) == 3 and max(growth) < cap_mb, (growth, cap_mb)
