"""A trained generator for people: load it from a checkpoint, log it to MLflow, sample it.

What is logged is a `ServingGenerator`: G (EMA weights when the run kept them)
whose images come out in [0, 1] whatever the training scale, as a pt2 model with
a signature of z (and y for conditional G) and the metadata `zerosum sample`
needs (z_dim, z distribution, classes, sample shape, output kind). A translating
method's G is logged as a `ServingTranslator`: a signature of one image batch in
[0, 1], and the metadata `zerosum translate` needs (kind "translator", input shape).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zerosum.catalog import TRANSLATION_METHODS, is_image_data, kind_of_shape
from zerosum.config import JobSpec
from zerosum.data import describe_dataset, folder_images, load_dataset, task_input_shape, to_unit_images
from zerosum.errors import ZerosumError, first_line
from zerosum.latent import LatentCodes
from zerosum.methods import method_for
from zerosum.pictures import image_grid, samples_to_image, save_png, scatter_image, side_by_side, titled_row
from zerosum.train.build import NoiseSource, generator_input_dim, noise_source_for

# What a served generator returns, by data kind (the metadata's "output").
OUTPUT_KINDS = {"points": "points", "images": "unit-images"}
# The metadata "kind" of a served translator (a generator's metadata has no kind).
TRANSLATOR_KIND = "translator"
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


class ServingTranslator(nn.Module):
    """A translator for users: images in [0, 1] in, images in [0, 1] out, whatever the training scale.
    images float (N, *input_shape) -> float (N, *sample_shape)."""

    def __init__(self, translator: nn.Module, scale: str):
        super().__init__()
        self.translator = translator.eval()
        self.scale = scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        inputs = images if self.scale == "unit" else images * 2.0 - 1.0
        return to_unit_images(self.translator(inputs), self.scale)


def translator_example(spec: JobSpec, sample_shape: tuple[int, ...]) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
    """A translator's example input (an image batch) and the metadata `zerosum translate` needs."""
    input_shape = task_input_shape(spec.data, sample_shape)
    metadata = {"kind": TRANSLATOR_KIND, "input_shape": list(input_shape), "sample_shape": list(sample_shape),
                "output": OUTPUT_KINDS["images"], "task": spec.data.task, "job": spec.name, "method": spec.method}
    return (torch.zeros(2, *input_shape),), metadata


def serving_example(spec: JobSpec, shape: tuple[tuple[int, ...], int]) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
    """Example inputs for export and the metadata `zerosum sample` (or `translate`) needs."""
    sample_shape, num_classes = shape
    if spec.method in TRANSLATION_METHODS:
        return translator_example(spec, sample_shape)
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
    """What users sample (the method's sampler: G with EMA weights when kept, T(G(z)) for
    staged, the translator for pix2pix and CycleGAN) from a checkpoint's state, in eval mode
    on CPU. shape: (sample_shape, num_classes) as `describe_dataset` gives them."""
    method = method_for(spec)
    players = method.build(*shape)
    for name, weights in state["players"].items():
        players[name].load_state_dict(weights)
    ema = None
    if state.get("ema") is not None:
        ema = copy.deepcopy(players["g"])
        ema.load_state_dict(state["ema"])
    return method.sampler(players, ema).eval()


@torch.no_grad()
def translation_picture(spec: JobSpec, translator: nn.Module, n: int = 64):
    """uint8 (H, W, 3): n held-out inputs, the translator's outputs and (paired tasks) the targets."""
    test = load_dataset(spec.data, "test", seed=spec.schedule.seed)
    inputs = test.inputs[:n]
    columns = [translator.condition(inputs), translator(inputs)] + ([test.samples[:n]] if test.paired else [])
    titles = ("input", "output", "target")[:len(columns)]
    return titled_row([image_grid(to_unit_images(c, spec.data.scale)) for c in columns], titles)


@torch.no_grad()
def sample_picture(spec: JobSpec, generator: nn.Module, num_classes: int, n: int = 64):
    """uint8 (H, W, 3): n samples of G as a grid (images) or a scatter over reals (points);
    a translator's held-out triplets."""
    if spec.method in TRANSLATION_METHODS:
        return translation_picture(spec, generator, n)
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
    trained = load_trained_generator(spec, state, shape)
    if metadata.get("kind") == TRANSLATOR_KIND:
        served, input_names = ServingTranslator(trained, spec.data.scale), ("images",)
    else:
        served, input_names = ServingGenerator(trained, spec.data.scale, metadata), ("z", "y")
    from zerosum import tracking

    return tracking.log_generator(run, served, example, metadata, register_as, alias=alias, input_names=input_names)


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


def check_samples_from_z(model_uri: str, metadata: dict) -> None:
    """A translator has no z to draw: `zerosum sample` and `zerosum eval --fake` refuse it."""
    if metadata.get("kind") == TRANSLATOR_KIND:
        raise ZerosumError(f"{model_uri}: this model translates images, it does not sample from z; "
                           "use `zerosum translate MODEL_URI --input DIR_OR_SPEC`")


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
    check_samples_from_z(model_uri, metadata)
    z = draw_noise(metadata, n, seed, code=code, sweep=sweep)
    y = class_labels(metadata, n, label, seed)
    with torch.no_grad():
        samples = model(z) if y is None else model(z, y)
    picture = scatter_image(samples) if metadata.get("output") == OUTPUT_KINDS["points"] else image_grid(samples)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_png(picture, output)
    return output


def folder_inputs(folder: Path, input_shape: tuple[int, ...], n: int) -> torch.Tensor:
    """The first n images of a folder as float (n, C, h, w) in [0, 1]; every image must have
    the model's input size, else a ZerosumError naming the file and the size it takes."""
    import numpy as np
    from PIL import Image

    channels, height, width = input_shape
    files = folder_images(folder, "--input")[:n]
    with Image.open(files[0]) as first:
        if first.size != (width, height):
            raise ZerosumError(f"--input {folder}: {files[0].relative_to(folder)} is {first.size[0]}x{first.size[1]}; "
                               f"this model translates {width}x{height} images")
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for path in files:
        with Image.open(path) as image:
            arrays.append(np.asarray(image.convert(mode), dtype=np.uint8).reshape(height, width, channels))
    return torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy()).float() / 255.0


def spec_inputs(path: Path, input_shape: tuple[int, ...], n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A job spec's first n held-out inputs and (paired tasks) targets, in [0, 1]; the spec's
    inputs must have the model's input shape."""
    from zerosum.config import load_job

    spec = load_job(path)
    if spec.data.task == "generate":
        raise ZerosumError(f"--input {path}: data.task is generate; a spec given to translate needs a task's inputs")
    test = load_dataset(spec.data, "test", seed=spec.schedule.seed)
    if tuple(test.inputs.shape[1:]) != tuple(input_shape):
        raise ZerosumError(f"--input {path}: its inputs are {tuple(test.inputs.shape[1:])}; this model translates "
                           f"{tuple(input_shape)}")
    inputs = to_unit_images(test.inputs[:n], spec.data.scale)
    return inputs, to_unit_images(test.samples[:n], spec.data.scale) if test.paired else None


def translate_to_png(model_uri: str, source: Path, output: Path, n: int = 64) -> Path:
    """Translate a folder of images or a job spec's held-out inputs with a logged translator;
    write input | output (| target) grids side by side to a PNG."""
    if n < 1:
        raise ZerosumError(f"-n: must be at least 1, got {n}")
    if not (source.is_dir() or source.suffix in (".yaml", ".yml") and source.is_file()):
        raise ZerosumError(f"--input {source}: expected a folder of images or a job spec (.yaml)")
    model, metadata = load_generator(model_uri)
    if metadata.get("kind") != TRANSLATOR_KIND:
        raise ZerosumError(f"{model_uri}: this model generates from z and has no image input; use `zerosum sample`")
    input_shape = tuple(int(side) for side in metadata["input_shape"])
    targets = None
    if source.is_dir():
        inputs = folder_inputs(source, input_shape, n)
    else:
        inputs, targets = spec_inputs(source, input_shape, n)
    with torch.no_grad():
        outputs = model(inputs)
    side = outputs.shape[-1]
    # The inputs at the outputs' side (nearest: shown as they are, not smoothed).
    shown = torch.nn.functional.interpolate(inputs, size=(side, side), mode="nearest")
    columns = [shown, outputs] + ([targets] if targets is not None else [])
    picture = titled_row([image_grid(c) for c in columns], ("input", "output", "target")[:len(columns)])
    output.parent.mkdir(parents=True, exist_ok=True)
    save_png(picture, output)
    return output
