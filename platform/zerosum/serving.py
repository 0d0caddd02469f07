"""A trained generator for people: load it from a checkpoint, log it to MLflow, sample it.

What is logged is a `ServingGenerator`: G (EMA weights when the run kept them)
whose images come out in [0, 1] whatever the training scale, as a pt2 model with
a signature of z (and y for conditional G) and the metadata `zerosum sample`
needs (z_dim, z distribution, classes, sample shape, output kind).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zerosum.catalog import is_image_data, kind_of_shape
from zerosum.config import JobSpec
from zerosum.data import describe_dataset, load_dataset, to_unit_images
from zerosum.errors import ZerosumError, first_line
from zerosum.latent import LatentCodes
from zerosum.pictures import image_grid, samples_to_image, save_png, scatter_image, side_by_side
from zerosum.train.build import NoiseSource, build_generator_for, generator_input_dim, noise_source_for

# What a served generator returns, by data kind (the metadata's "output").
OUTPUT_KINDS = {"points": "points", "images": "unit-images"}
# A URI scheme (models:/..., runs:/..., file:///...): two letters at least, so that a Windows
# drive letter (C:) stays a path. And the forms `zerosum sample` users write.
MODEL_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
MODEL_URI_FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/generator"


class ServingGenerator(nn.Module):
    """G for users: images come out in [0, 1] whatever the training scale; points as they are."""

    def __init__(self, generator: nn.Module, scale: str, metadata: dict[str, Any]):
        super().__init__()
        self.generator = generator.eval()
        self.scale = scale
        self.images = metadata["output"] == OUTPUT_KINDS["images"]
        self.conditional = metadata["num_classes"] > 0

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.generator(z, y if self.conditional else None)
        return to_unit_images(out, self.scale) if self.images else out


def serving_example(spec: JobSpec, shape: tuple[tuple[int, ...], int]) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
    """Example inputs for export and the metadata `zerosum sample` needs."""
    sample_shape, num_classes = shape
    classes = num_classes if spec.model.conditional else 0
    g, codes = spec.model.g, spec.model.codes
    input_dim = generator_input_dim(spec)
    example = (torch.zeros(2, input_dim),) + ((torch.zeros(2, dtype=torch.int64),) if classes else ())
    # z_dim is the noise part; InfoGAN's codes follow it in G's input (one-hot, then continuous).
    metadata = {"z_dim": g.z_dim, "z_distribution": g.z_distribution, "num_classes": classes,
                "codes": {"categorical": codes.categorical, "continuous": codes.continuous},
                "sample_shape": list(sample_shape), "output": OUTPUT_KINDS[kind_of_shape(sample_shape)],
                "job": spec.name, "method": spec.method}
    return example, metadata


def load_trained_generator(spec: JobSpec, state: dict[str, Any], shape: tuple[tuple[int, ...], int]) -> nn.Module:
    """G (EMA weights when kept) from a checkpoint's state, in eval mode on CPU.
    shape: (sample_shape, num_classes) as `describe_dataset` gives them."""
    generator = build_generator_for(spec, *shape)
    generator.load_state_dict(state["ema"] if state.get("ema") is not None else state["players"]["g"])
    return generator.eval()


@torch.no_grad()
def sample_picture(spec: JobSpec, generator: nn.Module, num_classes: int, n: int = 64):
    """uint8 (H, W, 3): n samples of G as a grid (images) or a scatter over reals (points)."""
    noise = noise_source_for(spec, num_classes)
    rng = torch.Generator().manual_seed(spec.schedule.seed)
    z, y = noise.sample(n, rng, torch.device("cpu")), noise.labels(n, rng, torch.device("cpu"))
    reals = load_dataset(spec.data, "test", seed=spec.schedule.seed).samples
    if not is_image_data(spec.data.name):
        return samples_to_image(generator(z, y), spec.data.scale, reference=reals[:1000])
    # Images: held-out reals beside the fakes, at the same grid size.
    return side_by_side(samples_to_image(reals[:n], spec.data.scale), samples_to_image(generator(z, y), spec.data.scale))


def log_checkpoint_generator(spec: JobSpec, state: dict[str, Any], run, register_as: str | None, alias: str,
                             extra_metadata: dict[str, Any] | None = None) -> str | None:
    """Log the checkpoint's G (EMA when kept) as a serving model, register it and set `alias`.
    Used for a run's final model and for a campaign's champion. Returns the version or None."""
    shape = describe_dataset(spec.data)
    example, metadata = serving_example(spec, shape)
    metadata.update(extra_metadata or {})
    served = ServingGenerator(load_trained_generator(spec, state, shape), spec.data.scale, metadata)
    from zerosum import tracking

    return tracking.log_generator(run, served, example, metadata, register_as, alias=alias)


def draw_noise(metadata: dict, n: int, seed: int, code: int | None = None,
               sweep: int | None = None) -> torch.Tensor:
    """G's input float32 (n, z_dim + codes), drawn as in training (NoiseSource): z, then
    InfoGAN's codes if any; `code` fixes the category, `sweep` steps continuous code `sweep`
    evenly from -1 to 1 across the n samples."""
    codes = metadata.get("codes") or {}
    categorical, continuous = int(codes.get("categorical", 0)), int(codes.get("continuous", 0))
    check_code_choice("--code", code, categorical, "categorical")
    check_code_choice("--sweep", sweep, continuous, "continuous")
    latent = LatentCodes(categorical, continuous) if categorical + continuous else None
    noise = NoiseSource(int(metadata["z_dim"]), metadata.get("z_distribution", "normal"), codes=latent)
    z = noise.sample(n, torch.Generator().manual_seed(seed), torch.device("cpu"))
    first_code = noise.z_dim
    if code is not None:
        z[:, first_code:first_code + categorical] = torch.nn.functional.one_hot(torch.tensor(code), categorical)
    if sweep is not None:
        z[:, first_code + categorical + sweep] = torch.linspace(-1, 1, n)
    return z


def check_code_choice(flag: str, value: int | None, count: int, kind: str) -> None:
    """A --code / --sweep index must name one of the generator's codes of that kind."""
    if value is None:
        return
    if not count:
        raise ZerosumError(f"{flag}: this generator has no {kind} code (not an InfoGAN)")
    if not 0 <= value < count:
        raise ZerosumError(f"{flag}: must be in 0..{count - 1} for this generator, got {value}")


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


def load_generator(model_uri: str) -> tuple[nn.Module, dict[str, Any]]:
    """A logged generator and its metadata; a URI that does not load is one clear error
    naming the URI, why, and the MLflow store it was looked up in."""
    check_model_uri(model_uri)
    from zerosum import tracking

    try:
        return tracking.load_generator(model_uri)
    except Exception as err:  # mlflow raises several types for a bad URI
        raise ZerosumError(f"{model_uri}: cannot load model ({first_line(err, type(err).__name__)}; "
                           f"MLflow store {tracking.resolve_tracking_uri()})") from None


def check_model_uri(model_uri: str) -> None:
    """A model URI has a scheme (models:/, runs:/, file:, ...) or is a folder of a logged
    model. Anything else is most likely a typo'd folder: MLflow would read it as a local
    path and say only that it lacks an MLmodel file."""
    if MODEL_URI_SCHEME.match(model_uri) or Path(model_uri).exists():
        return
    raise ZerosumError(f"{model_uri}: no such folder, and not a model URI ({MODEL_URI_FORMS})")


def sample_to_png(model_uri: str, n: int, output: Path, label: int | None = None, seed: int = 0,
                  code: int | None = None, sweep: int | None = None) -> Path:
    """Load the model, draw n samples and write a grid (images) or scatter (points) PNG."""
    if n < 1:
        raise ZerosumError(f"-n: must be at least 1, got {n}")
    model, metadata = load_generator(model_uri)
    z = draw_noise(metadata, n, seed, code=code, sweep=sweep)
    y = class_labels(metadata, n, label, seed)
    with torch.no_grad():
        samples = model(z) if y is None else model(z, y)
    picture = scatter_image(samples) if metadata.get("output") == OUTPUT_KINDS["points"] else image_grid(samples)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_png(picture, output)
    return output
