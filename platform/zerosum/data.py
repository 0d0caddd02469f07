"""Datasets as in-memory tensors, and a sharded batch iterator for data-parallel workers.

Every dataset here fits in memory (MNIST is 47 MB as uint8), so a batch is one
index into a tensor rather than a DataLoader's per-item collate: on 2 CPU cores
that is the difference between the loader and the model being the bottleneck.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from evals.modes import mixture_centres as evals_mixture
from zerosum import tasks
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
    """samples: float32 (N, *sample_shape) in the spec's scale; labels: int64 (N,) (-1 if none).

    For an image-to-image task (zerosum.tasks): inputs float32 (M, *input_shape) and their
    labels (M,); paired: input i belongs to sample i (M = N), else the inputs are another
    domain; baseline (test split): the task's baseline output per input, (M, *sample_shape).
    """

    samples: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    inputs: torch.Tensor | None = None
    input_labels: torch.Tensor | None = None
    baseline: torch.Tensor | None = None
    paired: bool = True

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.samples.shape[1:])

    def __len__(self) -> int:
        return self.samples.shape[0]


# --------------------------------------------------------------------------- readers


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or .gz): uint8 images (N, H, W) or labels (N,)."""
    with open_idx(path) as f:
        raw = f.read()
    shape, offset = idx_header(raw[:IDX_HEADER_MAX_BYTES], path)
    # A bytearray keeps the array writable, so torch.from_numpy can share it without copying.
    data = np.frombuffer(bytearray(raw), dtype=np.uint8, offset=offset)
    if data.size != math.prod(shape):
        raise DataError(f"{path}: header says {shape} but holds {data.size} bytes")
    return data.reshape(shape)


IDX_HEADER_MAX_BYTES = 4 + 4 * 255  # magic, then one big-endian uint32 per dimension


def open_idx(path: Path):
    """The IDX file as a binary stream, decompressed on the fly when it ends in .gz."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def idx_header(head: bytes, path: Path) -> tuple[tuple[int, ...], int]:
    """(shape, byte offset of the data) from an IDX file's first bytes; a DataError naming
    the file if it is not an unsigned-byte IDX file."""
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] != 0x08 or len(head) < 4 + 4 * head[3]:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = head[3]
    shape = tuple(int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return shape, 4 + 4 * ndim


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


# Stacked MNIST's test split: as many stacked images as MNIST has test digits.
STACKED_TEST_SAMPLES = 10_000


def load_stacked_mnist(spec: DataSpec, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Stacked MNIST (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018) -> uint8 images
    (N, 3, 28, 28) and int64 labels 100 d_R + 10 d_G + d_B in 0..999 (N,).

    Each image stacks three digits drawn with replacement from the split's MNIST digits as
    its R, G, B channels, seeded by data.seed (the test split by data.seed + 1). N is
    data.num_samples for train and STACKED_TEST_SAMPLES for test. PacGAN draws from train and
    test pooled; here the splits stay apart, so that the test split is held out.
    """
    digits, digit_labels = load_idx_dataset(spec.model_copy(update={"name": DATASETS[spec.name].channels_of}), split)
    count = spec.num_samples if split == "train" else STACKED_TEST_SAMPLES
    generator = torch.Generator().manual_seed(spec.seed + (0 if split == "train" else 1))
    chosen = torch.randint(len(digits), (count, 3), generator=generator).numpy()
    images = digits[chosen.ravel(), 0].reshape(count, 3, *digits.shape[2:])
    labels = digit_labels[chosen] @ np.array([100, 10, 1], dtype=np.int64)
    return images, labels


def load_digits_dataset(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (16 grey levels) -> uint8 (N, 1, 8, 8); split 80/20 by index."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    cut = int(0.8 * len(images))
    part = slice(0, cut) if split == "train" else slice(cut, None)
    return images[part], bunch.target[part].astype(np.int64)


IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".webp")  # what an image folder may hold


def folder_files(root: Path) -> tuple[list[Path], list[str]]:
    """The images under root (sorted paths) and the class names, the sorted names of the
    subfolders holding them (none when the images lie directly in root). Lists, no decoding."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"data.root: no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    return files, sorted({p.parent.name for p in files if p.parent != root})


def folder_label(path: Path, root: Path, classes: list[str]) -> int:
    """The class index of an image in a folder dataset: its subfolder's, -1 if it lies in root."""
    return classes.index(path.parent.name) if path.parent != root else -1


def decode_image(source, channels: int, side: int) -> np.ndarray:
    """One image file (a path or a binary stream) -> uint8 (channels, side, side): converted to
    greyscale or RGB, then resized bilinearly. The in-memory and the streamed folder paths both
    decode with this, so that they yield the same pixels."""
    from PIL import Image

    with Image.open(source) as image:
        converted = image.convert("L" if channels == 1 else "RGB").resize((side, side), Image.BILINEAR)
    return np.asarray(converted).reshape(side, side, channels).transpose(2, 0, 1)


def load_image_folder(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """root/<class>/*.png|jpg (or images directly in root) -> uint8 (N, C, S, S), labels by subfolder."""
    root = Path(spec.root)
    files, classes = folder_files(root)
    images = np.stack([decode_image(p, spec.channels, spec.image_size) for p in files])
    labels = np.array([folder_label(p, root, classes) for p in files])
    return np.ascontiguousarray(images), labels.astype(np.int64)


def decode_folder_images(spec: DataSpec, files: list[Path]) -> torch.Tensor:
    """The folder dataset's images at `files` (n paths), float32 (n, C, S, S) in the spec's
    scale: those images decoded, no others."""
    return to_scale(np.stack([decode_image(p, spec.channels, spec.image_size) for p in files]), spec.scale)


def folder_images(folder: Path, flag: str) -> list[Path]:
    """The images under `folder` (subfolders too), each readable and all of one square
    size; else a DataError naming `flag`, the folder and the file. The folder loader scales
    every image to one side, so a folder of mixed sizes would be scored distorted, silently."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        found = (f"; its {len(files)} file(s), e.g. {files[0].relative_to(folder)}, are not images" if files
                 else "; it is empty")
        raise DataError(f"{flag} {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or its subfolders{found}")
    first_path, first_size = images[0], image_size(images[0], folder, flag)
    for path in images:
        size = first_size if path == first_path else image_size(path, folder, flag)
        if size[0] != size[1]:
            raise DataError(f"{flag} {folder}: {path.relative_to(folder)} is {size[0]}x{size[1]}; "
                            f"images must be square")
        if size != first_size:
            raise DataError(f"{flag} {folder}: images of different sizes ({first_path.relative_to(folder)} is "
                            f"{first_size[0]}x{first_size[1]}, {path.relative_to(folder)} is {size[0]}x{size[1]}); "
                            f"every image must have the same size")
    return images


def image_size(path: Path, folder: Path, flag: str) -> tuple[int, int]:
    """(width, height) from the file's header (no decoding), or a DataError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except UnidentifiedImageError:
        problem = "not an image in a format PIL reads"
    except OSError as err:
        problem = f"cannot read it ({err.strerror or err})"
    raise DataError(f"{flag} {folder}: {path.relative_to(folder)}: {problem}")


def mixture_centres(name: str) -> torch.Tensor:
    """Mode centres, float32 (K, 2), as evals defines them (ring8: radius 2; ring8-pacgan:
    radius 1; grid25: {-4..4}^2)."""
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
    return scale_pixels(torch.from_numpy(np.ascontiguousarray(images_uint8)), scale)


def scale_pixels(images_uint8: torch.Tensor, scale: str) -> torch.Tensor:
    """uint8 tensor -> float32 in [0,1] ('unit') or [-1,1] ('symmetric'), on its device."""
    unit = images_uint8.float().div_(255.0)
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
    elif spec.name == "stacked-mnist":
        images, labels = load_stacked_mnist(spec, split)
    else:
        images, labels = load_idx_dataset(spec, split)
    num_classes = int(labels.max()) + 1 if labels.size and labels.min() >= 0 else 0
    # The table's count where it has one: a draw of stacked digits need not hold class 999.
    num_classes = DATASETS[spec.name].num_classes or num_classes
    dataset = _limit(Dataset(to_scale(images, spec.scale), torch.from_numpy(labels), num_classes),
                     spec.limit if split == "train" else None)
    if spec.task == "generate":
        return dataset
    return derive_task(dataset, spec, split, seed)


def _limit(dataset: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(dataset):
        return dataset
    return Dataset(dataset.samples[:limit], dataset.labels[:limit], dataset.num_classes)


def images_only(data: DataSpec) -> DataSpec:
    """The data spec of the images alone (data.task generate): what a classifier trains on and
    what a task's outputs are compared with."""
    return data.model_copy(update={"task": "generate", "source": None})


def derive_task(dataset: Dataset, data: DataSpec, split: str, seed: int) -> Dataset:
    """The task's dataset (zerosum.tasks): `dataset`, the images as read, with the inputs of
    data.task, their labels and (test split) the task's baseline outputs."""
    images, side = dataset.samples, dataset.samples.shape[-1]
    if data.task == "superres":
        inputs = tasks.area_downsample(images, data.factor)
        return replace(dataset, inputs=inputs, input_labels=dataset.labels,
                       baseline=tasks.lift(inputs, side, data.scale) if split == "test" else None)
    if data.task == "complete":
        masks = tasks.square_masks(len(images), side, data.mask_size,
                                   torch.Generator().manual_seed(tasks.MASK_SEEDS[split]))
        inputs = torch.where(masks, torch.tensor(tasks.MASK_FILL[data.scale]), images)
        baseline = None
        if split == "test":
            train_mean = load_dataset(images_only(data), "train").samples.mean(0)
            baseline = torch.where(masks, train_mean, images)
        return replace(dataset, inputs=inputs, input_labels=dataset.labels, baseline=baseline)
    domain_x = load_dataset(data.source.model_copy(update={"scale": data.scale}), split, seed=seed)
    inputs = tasks.resize_to(domain_x.samples, side)
    return replace(dataset, inputs=inputs, input_labels=domain_x.labels, paired=False,
                   baseline=inputs if split == "test" else None)


def task_input_shape(data: DataSpec, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
    """One input of data.task, from one sample's (C, S, S): superres (C, S/f, S/f); complete and
    unpaired (C, S, S) (an unpaired domain is resized to S and has C channels, config checks)."""
    channels, side = sample_shape[0], sample_shape[-1]
    if data.task == "superres":
        return (channels, side // data.factor, side // data.factor)
    return tuple(sample_shape)


def describe_dataset(spec: DataSpec) -> tuple[tuple[int, ...], int]:
    """(sample_shape, num_classes) without loading pixels where the answer is known: from the
    catalog, or for a folder from its spec and its subfolders' names."""
    info = DATASETS[spec.name]
    if info.sample_shape is not None and info.num_classes is not None:
        return info.sample_shape, info.num_classes
    if spec.name == "folder" and spec.task == "generate":
        return folder_description(spec)
    dataset = load_dataset(spec)
    return dataset.sample_shape, dataset.num_classes


def folder_description(spec: DataSpec) -> tuple[tuple[int, int, int], int]:
    """A folder dataset's (C, S, S) and class count (0 when some images lie outside any class
    subfolder, as load_dataset counts them), from its file list alone."""
    root = Path(spec.root)
    files, classes = folder_files(root)
    unlabelled = any(p.parent == root for p in files)
    return (spec.channels, spec.image_size, spec.image_size), 0 if unlabelled else len(classes)


# --------------------------------------------------------------------------- batching


def shard_order(length: int, rank: int, world_size: int, seed: int, epoch: int) -> torch.Tensor:
    """This rank's indices into `length` items for one epoch, shuffled like DistributedSampler
    (padded so that every rank gets the same count)."""
    sampler = DistributedSampler(range(length), num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                 drop_last=False)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler))


class ShardedBatches:
    """Endless batches of this rank's shard, reshuffled every epoch like DistributedSampler,
    as {"x": samples, "y": labels} and, for a task, {"c": inputs, "c_y": their labels}.

    Every rank gets the same number of batches per epoch (the sampler pads), so
    collectives never wait on a rank that ran out of data. Paired inputs come with their
    samples; an unpaired domain is drawn in its own shuffled order (seed + 1), so no
    pairing of the two is ever seen. `start_batch`: batches drawn before (a resumed run's),
    so that iteration continues each stream where it was, mid-epoch included.
    """

    def __init__(self, dataset: Dataset, batch_size: int, rank: int, world_size: int, seed: int):
        counts = {"dataset": len(dataset)}
        if dataset.inputs is not None and not dataset.paired:
            counts["data.source domain"] = len(dataset.inputs)
        for what, count in counts.items():
            if count < batch_size * world_size:
                raise DataError(
                    f"schedule.batch_size: {batch_size} x {world_size} workers needs at least that many "
                    f"samples, the {what} has {count}"
                )
        self.dataset = dataset
        self.batch_size = batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.start_batch = 0

    def batches_per_epoch(self, length: int | None = None) -> int:
        """Whole batches of this rank's shard of `length` items (default: the samples)."""
        per_rank = -(-(length or len(self.dataset)) // self.world_size)
        return per_rank // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        data = self.dataset
        unpaired = data.inputs is not None and not data.paired
        other = self.index_batches(len(data.inputs), self.seed + 1) if unpaired else None
        for chunk in self.index_batches(len(data), self.seed):
            batch = {"x": data.samples[chunk], "y": data.labels[chunk]}
            if data.inputs is not None:
                source = next(other) if unpaired else chunk
                batch |= {"c": data.inputs[source], "c_y": data.input_labels[source]}
            yield batch

    def index_batches(self, length: int, seed: int) -> Iterator[torch.Tensor]:
        """Index batches into this rank's shard of `length` items, endless, from batch
        `start_batch` on: epoch start_batch // per-epoch, that many batches into it."""
        per_epoch = self.batches_per_epoch(length)
        epoch, skip = divmod(self.start_batch, per_epoch)
        while True:
            order = shard_order(length, self.rank, self.world_size, seed, epoch)
            for index in range(skip, per_epoch):
                yield order[index * self.batch_size:(index + 1) * self.batch_size]
            epoch, skip = epoch + 1, 0
