"""Datasets read from ../shared/data and the sharded batches workers draw."""


import numpy as np
import pytest
import torch

from zerosum.config import DataSpec
from zerosum.data import STACKED_TEST_SAMPLES, ShardedBatches, load_dataset, load_idx_dataset, mixture_centres, read_idx
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


# (mixture, radius, std, tolerance on the std of 4000 points' 8000 offset coordinates).
# ring8: a loose 10%; ring8-pacgan: the sample std's relative standard error is
# 1 / sqrt(2 * 8000) = 0.8%, so 4% (5 standard errors) is 0.0004.
RINGS = [("ring8", 2.0, 0.02, 0.002), ("ring8-pacgan", 1.0, 0.01, 0.0004)]


@pytest.mark.parametrize(("name", "radius", "std", "tolerance"), RINGS)
def test_ring_geometry(name, radius, std, tolerance):
    centres = mixture_centres(name)
    # float32 centres (cos, sin rounded to float32), then squares, a sum and a sqrt: ~3 half-ulps = 2e-7.
    np.testing.assert_allclose(centres.norm(dim=1), radius, rtol=1e-6)
    data = load_dataset(DataSpec(name=name, num_samples=4000), "train")
    offsets = data.samples - centres[data.labels]
    assert abs(offsets.std().item() - std) < tolerance
    assert set(data.labels.tolist()) == set(range(8))


def digit_labels_by_image(shared_data, split: str) -> dict[bytes, int]:
    """MNIST's digits of a split, keyed by their pixels."""
    images, labels = load_idx_dataset(DataSpec(name="mnist", root=shared_data / "mnist"), split)
    return {image.tobytes(): int(label) for image, label in zip(images[:, 0], labels)}


@pytest.mark.parametrize("split", ["train", "test"])
def test_stacked_mnist_labels_are_its_channels_digits(shared_data, split):
    spec = DataSpec(name="stacked-mnist", root=shared_data / "mnist", scale="unit", num_samples=300)
    data = load_dataset(spec, split)
    assert data.sample_shape == (3, 28, 28) and data.num_classes == 1000
    assert len(data) == (300 if split == "train" else STACKED_TEST_SAMPLES)
    lookup = digit_labels_by_image(shared_data, split)
    # Exact: unit pixels are uint8 / 255 in float32, and round(x * 255) gives the byte back.
    pixels = data.samples[:300].mul(255).round().to(torch.uint8).numpy()
    digits = np.array([[lookup[channel.tobytes()] for channel in image] for image in pixels])
    np.testing.assert_array_equal(data.labels[:300].numpy(), digits @ np.array([100, 10, 1]))
    # 900 draws with replacement of 10 digits: every digit, in every channel position.
    assert all(set(digits[:, c]) == set(range(10)) for c in range(3))


def test_stacked_mnist_is_seeded_by_data_seed(shared_data):
    spec = DataSpec(name="stacked-mnist", root=shared_data / "mnist", num_samples=50)
    first, again = load_dataset(spec, "train", seed=1), load_dataset(spec, "train", seed=2)
    other = load_dataset(spec.model_copy(update={"seed": 1}), "train")
    # The draw is the dataset's (data.seed), not the run's: a run's seed does not change it.
    assert torch.equal(first.samples, again.samples) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.labels, other.labels)


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
