"""Datasets as in-memory tensors, and a sharded batch iterator for data-parallel workers.

Every dataset here fits in memory (MNIST is 47 MB as uint8), so a batch is one
index into a tensor rather than a DataLoader's per-item collate: on 2 CPU cores
that is the difference between the loader and the model being the bottleneck.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from evals.modes import mixture_centres as evals_mixture
from zerosum.catalog import DATASETS
from zerosum.config import DataSpec
from zerosum.errors import DataError

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


@dataclass(frozen=True)
class Dataset:
    """samples: float32 (N, *sample_shape) in the spec's scale; labels: int64 (N,) (-1 if none)."""

    samples: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.samples.shape[1:])

    def __len__(self) -> int:
        return self.samples.shape[0]


# --------------------------------------------------------------------------- readers


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or .gz): uint8 images (N, H, W) or labels (N,)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    # A bytearray keeps the array writable, so torch.from_numpy can share it without copying.
    data = np.frombuffer(bytearray(raw), dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(shape):
        raise DataError(f"{path}: header says {shape} but holds {data.size} bytes")
    return data.reshape(shape)


def find_idx_file(root: Path, dataset: str, stem: str) -> Path:
    """Look in root/ and root/<TorchvisionName>/raw/, plain or gzipped."""
    folders = [root, root / TORCHVISION_FOLDERS[dataset] / "raw"]
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(
        f"data.root: {stem}[.gz] not found in {' or '.join(str(f) for f in folders)}. "
        f"Offline, copy the original IDX files there; online, set data.download: true"
    )


def download_with_torchvision(spec: DataSpec) -> None:
    """Fetch the raw files with torchvision into root/<Name>/raw/ (needs internet)."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[spec.name]
    try:
        for train in (True, False):
            cls(str(spec.root), train=train, download=True)
    except Exception as err:  # torchvision raises URLError, RuntimeError, ... offline
        raise DataError(
            f"data.download: could not download {spec.name} into {spec.root} ({err}). "
            f"Offline, put the four IDX .gz files in data.root and set data.download: false"
        ) from None


def load_idx_dataset(spec: DataSpec, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-style dataset -> uint8 images (N, 1, 28, 28), int64 labels (N,)."""
    root = Path(spec.root)
    if spec.download:
        download_with_torchvision(spec)
    image_stem, label_stem = IDX_FILES[split]
    images = read_idx(find_idx_file(root, spec.name, image_stem))
    labels = read_idx(find_idx_file(root, spec.name, label_stem))
    return images[:, None], labels.astype(np.int64)


def load_digits_dataset(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (16 grey levels) -> uint8 (N, 1, 8, 8); split 80/20 by index."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    cut = int(0.8 * len(images))
    part = slice(0, cut) if split == "train" else slice(cut, None)
    return images[part], bunch.target[part].astype(np.int64)


IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".webp")  # what an image folder may hold


def load_image_folder(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """root/<class>/*.png|jpg (or images directly in root) -> uint8 (N, C, S, S), labels by subfolder."""
    from PIL import Image

    root = Path(spec.root)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"data.root: no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    classes = sorted({p.parent.name for p in files if p.parent != root})
    mode = "L" if spec.channels == 1 else "RGB"
    size = (spec.image_size, spec.image_size)
    arrays = [np.asarray(Image.open(p).convert(mode).resize(size, Image.BILINEAR)) for p in files]
    images = np.stack(arrays).reshape(len(files), size[0], size[1], spec.channels).transpose(0, 3, 1, 2)
    labels = np.array([classes.index(p.parent.name) if p.parent != root else -1 for p in files])
    return np.ascontiguousarray(images), labels.astype(np.int64)


def mixture_centres(name: str) -> torch.Tensor:
    """Mode centres, float32 (K, 2), as evals defines them (ring8: radius 2; grid25: {-4..4}^2)."""
    return torch.from_numpy(evals_mixture(name)[0]).float()


def sample_mixture(name: str, num_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points float32 (N, 2) from the named Gaussian mixture, and their mode index (N,)."""
    generator = torch.Generator().manual_seed(seed)
    centres, std = mixture_centres(name), evals_mixture(name)[1]
    modes = torch.randint(len(centres), (num_samples,), generator=generator)
    noise = torch.randn(num_samples, 2, generator=generator) * std
    return centres[modes] + noise, modes


# --------------------------------------------------------------------------- building


def to_scale(images_uint8: np.ndarray, scale: str) -> torch.Tensor:
    """uint8 pixels -> float32 in [0,1] ('unit') or [-1,1] ('symmetric')."""
    unit = torch.from_numpy(np.ascontiguousarray(images_uint8)).float().div_(255.0)
    return unit if scale == "unit" else unit.mul_(2.0).sub_(1.0)


def to_unit_images(samples: torch.Tensor, scale: str) -> torch.Tensor:
    """Inverse of `to_scale` for model outputs: float in [0,1], clamped."""
    unit = samples if scale == "unit" else (samples + 1.0) / 2.0
    return unit.clamp(0.0, 1.0)


def load_dataset(spec: DataSpec, split: str = "train", seed: int = 0) -> Dataset:
    """Build the dataset named by the spec. split: 'train' or 'test'."""
    if DATASETS[spec.name].mixture:
        # A test split is a fresh draw from the same mixture, seeded apart from training.
        points, modes = sample_mixture(spec.name, spec.num_samples, seed + (0 if split == "train" else 1))
        return _limit(Dataset(points, modes, num_classes=len(mixture_centres(spec.name))), spec.limit)
    if spec.name == "digits":
        images, labels = load_digits_dataset(split)
    elif spec.name == "folder":
        images, labels = load_image_folder(spec)
    else:
        images, labels = load_idx_dataset(spec, split)
    num_classes = int(labels.max()) + 1 if labels.size and labels.min() >= 0 else 0
    dataset = Dataset(to_scale(images, spec.scale), torch.from_numpy(labels), num_classes)
    return _limit(dataset, spec.limit if split == "train" else None)


def _limit(dataset: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(dataset):
        return dataset
    return Dataset(dataset.samples[:limit], dataset.labels[:limit], dataset.num_classes)


def describe_dataset(spec: DataSpec) -> tuple[tuple[int, ...], int]:
    """(sample_shape, num_classes) without loading pixels where the answer is known."""
    info = DATASETS[spec.name]
    if info.sample_shape is not None and info.num_classes is not None:
        return info.sample_shape, info.num_classes
    dataset = load_dataset(spec)
    return dataset.sample_shape, dataset.num_classes


# --------------------------------------------------------------------------- batching


class ShardedBatches:
    """Endless batches of this rank's shard, reshuffled every epoch like DistributedSampler.

    Every rank gets the same number of batches per epoch (the sampler pads), so
    collectives never wait on a rank that ran out of data.
    """

    def __init__(self, dataset: Dataset, batch_size: int, rank: int, world_size: int, seed: int):
        if len(dataset) < batch_size * world_size:
            raise DataError(
                f"schedule.batch_size: {batch_size} x {world_size} workers needs at least that many "
                f"samples, the dataset has {len(dataset)}"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.sampler = DistributedSampler(range(len(dataset)), num_replicas=world_size, rank=rank,
                                          shuffle=True, seed=seed, drop_last=False)
        self.epoch = 0

    def batches_per_epoch(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            self.sampler.set_epoch(self.epoch)
            indices = torch.tensor(list(self.sampler))
            for start in range(0, self.batches_per_epoch() * self.batch_size, self.batch_size):
                chunk = indices[start: start + self.batch_size]
                yield self.dataset.samples[chunk], self.dataset.labels[chunk]
            self.epoch += 1
