"""A small CNN classifier for a labelled image domain (MNIST, Fashion-MNIST, digits).

It gives domain features (its penultimate layer, for a domain FID), class
probabilities (class histograms, mode coverage) and its own test accuracy.
zerosum's ``featurizer train`` command trains and saves it with the functions
here; evals never reads datasets itself.

Images follow the protocol of ``evals.features``: float in [0, 1] (quantised to
multiples of 1/255, like reals read from uint8 files) or uint8, shaped
(N, C, H, W) with H = W = ``image_size``.

On CPU the network runs in channels_last memory format: for these small
convolutions that made training about 4x faster. One epoch of MNIST takes
8-18 s on 2 cores (one thread: about 18 s) and reaches about 98.8% test
accuracy; ``fit_classifier`` defaults to 2 epochs (about 99%).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evals.images import images_to_uint8
from evals.io import atomic_torch_save

__all__ = [
    "DomainClassifier",
    "accuracy",
    "classifier_features",
    "fit_classifier",
    "images_to_unit_float",
    "load_classifier",
    "save_classifier",
]

log = logging.getLogger(__name__)

_META_TYPES = (int, float, str, bool)


def images_to_unit_float(images) -> torch.Tensor:
    """uint8 or [0, 1] float images (N, C, H, W) -> float32 in [0, 1], quantised to k/255."""
    return images_to_uint8(images, channels=None).to(torch.float32).div_(255)


class DomainClassifier(nn.Module):
    """Two conv blocks and two linear layers.

    conv3x3(C -> w1) BN ReLU maxpool2, conv3x3(w1 -> w2) BN ReLU maxpool2,
    linear(w2 * (S//4)^2 -> feature_dim) ReLU, linear(feature_dim -> num_classes).

    Args:
        in_channels: 1 (grey) or 3 (RGB).
        num_classes: K >= 2.
        image_size: S, square inputs of S x S with S >= 4 (28, 8 and 32 are typical).
        widths: conv channels (w1, w2).
        feature_dim: size F of the penultimate layer returned by ``features``.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int,
                 widths: tuple[int, int] = (16, 32), feature_dim: int = 128):
        super().__init__()
        if in_channels not in (1, 3) or num_classes < 2 or image_size < 4:
            raise ValueError(
                "in_channels must be 1 or 3, num_classes >= 2 and image_size >= 4; got "
                f"{in_channels}, {num_classes}, {image_size}"
            )
        if len(widths) != 2 or min(widths) < 1 or feature_dim < 1:
            raise ValueError(f"widths must be two positive ints and feature_dim >= 1; got {widths}, {feature_dim}")
        self.config = {"in_channels": int(in_channels), "num_classes": int(num_classes),
                       "image_size": int(image_size), "width1": int(widths[0]),
                       "width2": int(widths[1]), "feature_dim": int(feature_dim)}
        w1, w2 = widths
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w1, 3, padding=1, bias=False), nn.BatchNorm2d(w1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w1, w2, 3, padding=1, bias=False), nn.BatchNorm2d(w2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(w2 * (image_size // 4) ** 2, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        size, channels = self.config["image_size"], self.config["in_channels"]
        if x.ndim != 4 or x.shape[1] != channels or x.shape[2] != size or x.shape[3] != size:
            raise ValueError(f"x must be (N, {channels}, {size}, {size}); got {tuple(x.shape)}")
        return x.contiguous(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations: x float (N, C, S, S) in [0, 1] -> float32 (N, F), >= 0."""
        return self.body(self._check(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: x float (N, C, S, S) in [0, 1] -> float32 (N, K)."""
        return self.head(self.features(x))


def _batches(count: int, batch_size: int):
    for start in range(0, count, batch_size):
        yield slice(start, min(start + batch_size, count))


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def classifier_features(model: DomainClassifier, images, batch_size: int = 512):
    """Penultimate features and class probabilities of images.

    Args:
        model: a DomainClassifier (switched to eval mode here).
        images: uint8 or [0, 1] float (N, C, S, S).
        batch_size: images per forward pass.

    Returns:
        (features float64 (N, F), probs float64 (N, K)) on CPU.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    model.eval()
    pixels, device = images_to_unit_float(images), _model_device(model)
    features, probs = [], []
    for part in _batches(pixels.shape[0], int(batch_size)):
        hidden = model.features(pixels[part].to(device))
        features.append(hidden.to("cpu", torch.float64))
        probs.append(torch.softmax(model.head(hidden).to(torch.float64), dim=1).cpu())
    return torch.cat(features), torch.cat(probs)


def _check_labels(labels, count: int, num_classes: int) -> torch.Tensor:
    labels = torch.as_tensor(np.asarray(labels)).to(torch.int64).reshape(-1)
    if labels.shape[0] != count:
        raise ValueError(f"labels must have one entry per image ({count}); got {labels.shape[0]}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes - 1}]; got [{labels.min()}, {labels.max()}]")
    return labels


def _train_epoch(model, optimizer, schedule, pixels, labels, batch_size, generator) -> float:
    model.train()
    device, total = _model_device(model), 0.0
    order = torch.randperm(pixels.shape[0], generator=generator)
    # Drop the last partial batch: BatchNorm statistics of a tiny batch are noise.
    steps = max(pixels.shape[0] // batch_size, 1)
    for step in range(steps):
        index = order[step * batch_size:(step + 1) * batch_size]
        loss = F.cross_entropy(model(pixels[index].to(device)), labels[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        total += float(loss.detach())
    return total / steps


def fit_classifier(images, labels, *, epochs: int = 2, batch_size: int = 128, lr: float = 3e-3,
                   seed: int = 0, num_classes: int | None = None, device="cpu",
                   on_epoch: Callable[[dict], None] | None = None) -> DomainClassifier:
    """Train a DomainClassifier with Adam and a one-cycle learning-rate schedule.

    Args:
        images: uint8 or [0, 1] float (N, C, S, S), square.
        labels: int (N,) in [0, K).
        epochs, batch_size, lr: the schedule (lr is the one-cycle peak).
        seed: seeds initialisation and shuffling; the global RNG is left untouched.
        num_classes: K; None means max(labels) + 1.
        on_epoch: called after each epoch with {"epoch", "loss", "seconds"}.

    Returns:
        The trained model in eval mode, on ``device``.
    """
    pixels = images_to_unit_float(images)
    if pixels.shape[2] != pixels.shape[3]:
        raise ValueError(f"images must be square; got {pixels.shape[2]}x{pixels.shape[3]}")
    if int(epochs) < 1 or int(batch_size) < 2 or not lr > 0:
        raise ValueError(f"epochs must be >= 1, batch_size >= 2 and lr > 0; got {epochs}, {batch_size}, {lr}")
    num_classes = int(num_classes or int(np.max(np.asarray(labels))) + 1)
    labels = _check_labels(labels, pixels.shape[0], num_classes)
    batch_size = min(int(batch_size), pixels.shape[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainClassifier(pixels.shape[1], num_classes, pixels.shape[2]).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = int(epochs) * max(pixels.shape[0] // batch_size, 1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(int(epochs)):
        start = time.perf_counter()
        loss = _train_epoch(model, optimizer, schedule, pixels, labels, batch_size, generator)
        report = {"epoch": epoch + 1, "loss": loss, "seconds": time.perf_counter() - start}
        log.info("classifier epoch %(epoch)d: loss %(loss).4f in %(seconds).1f s", report)
        if on_epoch is not None:
            on_epoch(report)
    return model.eval()


def accuracy(model: DomainClassifier, images, labels, batch_size: int = 1024) -> float:
    """Fraction of images whose argmax class equals the label, in [0, 1]."""
    _, probs = classifier_features(model, images, batch_size)
    labels = _check_labels(labels, probs.shape[0], probs.shape[1])
    return float((probs.argmax(dim=1) == labels).to(torch.float64).mean())


def save_classifier(model: DomainClassifier, path, meta: dict | None = None) -> Path:
    """Save weights, architecture and ``meta`` (str keys; int/float/str/bool values) atomically.

    The file holds only tensors and plain values, so ``load_classifier`` reads
    it with ``torch.load(weights_only=True)``.
    """
    meta = dict(meta or {})
    bad = {k: type(v).__name__ for k, v in meta.items() if not isinstance(k, str) or not isinstance(v, _META_TYPES)}
    if bad:
        raise ValueError(f"meta values must be int, float, str or bool with str keys; got {bad}")
    payload = {"format": "evals.DomainClassifier/1", "config": dict(model.config), "meta": meta,
               "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}}
    return atomic_torch_save(payload, path)


def load_classifier(path, device="cpu") -> tuple[DomainClassifier, dict]:
    """Load a file written by ``save_classifier`` -> (model in eval mode, meta dict)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != "evals.DomainClassifier/1":
        raise ValueError(f"{path} is not a classifier saved by evals.save_classifier")
    config = payload["config"]
    model = DomainClassifier(config["in_channels"], config["num_classes"], config["image_size"],
                             widths=(config["width1"], config["width2"]), feature_dim=config["feature_dim"])
    model.load_state_dict(payload["state_dict"])
    model = model.to(device=device, memory_format=torch.channels_last)
    return model.eval(), dict(payload["meta"])
