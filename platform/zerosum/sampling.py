"""`zerosum sample`: draw from a logged generator into a PNG."""

from __future__ import annotations

from pathlib import Path

import torch

from zerosum.errors import ZerosumError
from zerosum.samples import image_grid, save_png, scatter_image
from zerosum.tracking import load_generator
from zerosum.train.setup import NoiseSource


def draw_noise(metadata: dict, n: int, seed: int) -> torch.Tensor:
    """z float32 (n, z_dim) from the distribution G was trained on."""
    noise = NoiseSource(int(metadata["z_dim"]), metadata.get("z_distribution", "normal"))
    return noise.fresh(n, torch.Generator().manual_seed(seed))


def class_labels(metadata: dict, n: int, label: int | None, seed: int) -> torch.Tensor | None:
    """int64 (n,) labels for a conditional G: all `label`, or uniform when none is asked."""
    classes = int(metadata.get("num_classes", 0))
    if not classes:
        if label is not None:
            raise ZerosumError("--label: this generator is not conditional; drop --label")
        return None
    if label is None:
        return torch.randint(classes, (n,), generator=torch.Generator().manual_seed(seed + 1))
    if not 0 <= label < classes:
        raise ZerosumError(f"--label: must be in 0..{classes - 1} for this generator, got {label}")
    return torch.full((n,), label, dtype=torch.int64)


def sample_to_png(model_uri: str, n: int, output: Path, label: int | None = None, seed: int = 0) -> Path:
    """Load the model, draw n samples and write a grid (images) or scatter (points) PNG."""
    if n < 1:
        raise ZerosumError(f"-n: must be at least 1, got {n}")
    try:
        model, metadata = load_generator(model_uri)
    except Exception as err:  # mlflow raises several types for a bad URI
        raise ZerosumError(f"{model_uri}: cannot load model ({err})") from None
    z = draw_noise(metadata, n, seed)
    y = class_labels(metadata, n, label, seed)
    with torch.no_grad():
        samples = model(z) if y is None else model(z, y)
    picture = scatter_image(samples) if metadata.get("output") == "points" else image_grid(samples)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_png(picture, output)
    return output
