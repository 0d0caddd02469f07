"""Datasets read from ../shared/data and the sharded batches workers draw."""


import numpy as np
import pytest
import torch

from zerosum.config import DataSpec
from zerosum.data import ShardedBatches, load_dataset, mixture_centres, read_idx
from zerosum.errors import DataError


def test_mnist_from_raw_idx_files(shared_data):
    spec = DataSpec(name="mnist", root=shared_data / "mnist", scale="unit")
    train = load_dataset(spec, "train")
    test = load_dataset(spec, "test")
    assert train.samples.shape == (60000, 1, 28, 28) and test.samples.shape == (10000, 1, 28, 28)
    assert train.num_classes == 10
    assert torch.bincount(train.labels).tolist()[:3] == [5923, 6742, 5958]  # published class counts
    assert 0.0 <= train.samples.min() and train.samples.max() == 1.0


def test_fashion_mnist_symmetric_scale(shared_data):
    spec = DataSpec(name="fashion-mnist", root=shared_data / "fashion-mnist", limit=100)
    data = load_dataset(spec, "train")
    assert len(data) == 100 and data.samples.min() == -1.0 and data.samples.max() <= 1.0


def test_missing_files_say_what_to_do(tmp_path):
    spec = DataSpec(name="mnist", root=tmp_path)
    with pytest.raises(DataError, match="data.download: true"):
        load_dataset(spec)


def test_idx_reader_rejects_other_files(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"hello world")
    with pytest.raises(DataError, match="IDX"):
        read_idx(path)


def test_digits_dataset():
    data = load_dataset(DataSpec(name="digits"), "train")
    assert data.sample_shape == (1, 8, 8) and data.num_classes == 10


def test_ring8_geometry():
    centres = mixture_centres("ring8")
    # float32 centres (cos, sin rounded to float32), then squares, a sum and a sqrt: ~3 half-ulps = 2e-7.
    np.testing.assert_allclose(centres.norm(dim=1), 2.0, rtol=1e-6)
    data = load_dataset(DataSpec(name="ring8", num_samples=4000), "train")
    offsets = data.samples - centres[data.labels]
    assert abs(offsets.std().item() - 0.02) < 0.002


def test_grid25_centres():
    centres = mixture_centres("grid25")
    assert len(centres) == 25 and set(centres[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


def test_sharded_batches_split_the_data_between_ranks():
    data = load_dataset(DataSpec(name="ring8", num_samples=1000), "train")
    seen = []
    for rank in range(2):
        batcher = ShardedBatches(data, batch_size=100, rank=rank, world_size=2, seed=0)
        batches = iter(batcher)
        chunk = [next(batches)["x"] for _ in range(batcher.batches_per_epoch())]
        seen.append({tuple(x.tolist()) for x in torch.cat(chunk)})
    assert not seen[0] & seen[1]
    assert len(seen[0]) == len(seen[1]) == 500


def test_batch_larger_than_dataset_is_an_error():
    data = load_dataset(DataSpec(name="ring8", num_samples=10), "train")
    with pytest.raises(DataError, match="batch_size"):
        ShardedBatches(data, batch_size=8, rank=0, world_size=2, seed=0)
