"""Stacked MNIST's digits: every channel of (generated) images read by zerosum's MNIST classifier.

The classifier is the one `zerosum featurizer train --dataset mnist` makes (evals.classifier's
CNN, cached as `featurizers/mnist.pt` in the zerosum cache); it is trained there first when
absent, as a job's classifier features are. The digits feed `evals.modes.stacked_mnist_scores`
(VEEGAN's and PacGAN's modes, KL and exp-entropy). The classifier's own MNIST test accuracy
says how far they can be trusted: all three digits of an image are read right with
probability about accuracy ** 3.
"""

from __future__ import annotations

from pathlib import Path

import torch

from evals.classifier import DomainClassifier, accuracy, load_classifier
from zerosum.catalog import DATASETS
from zerosum.config import DataSpec
from zerosum.data import load_dataset
from zerosum.errors import ConfigError
from zerosum.evaluation.channels import channel_features_and_probs
from zerosum.evaluation.featurizer import featurizer_path, train_featurizer

# The dataset each channel of stacked-mnist holds: its classifier reads the digits.
DIGITS = DATASETS["stacked-mnist"].channels_of


def mnist_classifier(device="cpu", *, root: Path | None = None) -> tuple[DomainClassifier, dict]:
    """(zerosum's MNIST classifier in eval mode on `device`, its meta: dataset, test_accuracy,
    epochs), from the cache; trained and cached first when absent, on the MNIST IDX files in
    `root` (without root, a ConfigError saying how to make it)."""
    path = featurizer_path(DataSpec.model_construct(name=DIGITS))
    if not path.is_file():
        if root is None:
            raise ConfigError(f"the {DIGITS} classifier is not cached at {path}; pass root (the folder of the "
                              f"{DIGITS} IDX files) or run `zerosum featurizer train --dataset {DIGITS} --root FOLDER`")
        train_featurizer(DataSpec(name=DIGITS, root=root), path)
    return load_classifier(path, device=device)


def channel_digits(images, device="cpu", *, root: Path | None = None) -> torch.Tensor:
    """The digit in each channel: uint8 or [0, 1] float images (N, 3, 28, 28) -> int64 (N, 3)
    on CPU, (d_R, d_G, d_B) in 0..9, each the argmax of the MNIST classifier (`mnist_classifier`;
    `root` trains it when it is not cached)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, 28, 28); got shape {tuple(images.shape)}")
    model, _ = mnist_classifier(device, root=root)
    _, probs = channel_features_and_probs(model, images)
    return probs.argmax(dim=2)


def mnist_test_accuracy(root: Path, device="cpu") -> float:
    """The MNIST classifier's accuracy on MNIST's 10,000 test digits (in `root`), in [0, 1]."""
    model, _ = mnist_classifier(device, root=root)
    test = load_dataset(DataSpec(name=DIGITS, root=root, scale="unit"), "test")
    return accuracy(model, test.samples, test.labels)
