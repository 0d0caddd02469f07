"""Feature extractors: images (or points) -> float64 feature vectors.

Input protocol, the same for real and generated images:

1. Images are (N, C, H, W) tensors or arrays, either uint8 (0..255) or float in
   [0, 1]. Map a tanh generator's [-1, 1] output with (x + 1) / 2 first; values
   more than 1e-3 outside [0, 1] are an error, smaller excursions are clipped.
2. Float images are quantised like real images read from 8-bit files:
   uint8 = round(x * 255). Without this, fakes carry sub-quantum detail that
   reals cannot, and the feature statistics drift apart for no visual reason.
3. Greyscale (C = 1) is replicated to 3 channels for the Inception network.
4. Resizing to 299 x 299 happens inside the Inception extractor (torch-fidelity's
   TF1-compatible bilinear resize), never before; callers pass native sizes.

Extractors (``build_feature_extractor(name, **options)``):

- ``"inception"``: 2048-d pool3 features of the TF-FID InceptionV3, through
  torch-fidelity's ``FeatureExtractorInceptionV3``. Batch norm is folded into
  the convolutions and, on CPU, the network runs channels_last under
  inference_mode: about 1.7-2.4x torch-fidelity's CPU throughput with features
  equal to ~1e-5. On GPUs TF32 is off unless asked for (see ``allow_tf32``).
- ``"classifier"``: the penultimate layer of a trained ``DomainClassifier``
  (``weights_path`` or ``model``); also exposes class probabilities.
- ``"identity"``: the samples themselves, flattened (2-D toy data).

Every extractor has ``name``, ``dim`` and ``__call__(images) -> float64 (N, dim)``
on CPU, and processes inputs in batches of ``batch_size``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
from torch import nn

from evals.classifier import DomainClassifier, classifier_features, load_classifier
from evals.images import images_to_uint8
from evals.inception import load_inception_state_dict, resolve_inception_weights

__all__ = [
    "EXTRACTORS",
    "ClassifierExtractor",
    "IdentityExtractor",
    "InceptionExtractor",
    "build_feature_extractor",
    "images_to_uint8",
]

def _fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold each eval-mode BatchNorm2d into the convolution before it (conv -> bn pairs).

    y = gamma (W x - mean) / sqrt(var + eps) + beta becomes W' x + b' with
    W' = W * s, b' = beta - mean * s, s = gamma / sqrt(var + eps). Saves one
    memory pass per layer; changes the features by ~1e-5 absolute.
    """
    for block in model.modules():
        conv, norm = getattr(block, "conv", None), getattr(block, "bn", None)
        if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)) or conv.bias is not None:
            continue
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        conv.weight.data.mul_(scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter(norm.bias - norm.running_mean * scale, requires_grad=False)
        block.bn = nn.Identity()
    return model


class InceptionExtractor:
    """2048-d TF-FID Inception pool3 features.

    Args:
        weights_path: explicit weights file; None resolves them as
            ``evals.inception.resolve_inception_weights`` documents.
        allow_download: let the resolver download as a last resort.
        device: where the network runs ("cpu" or "cuda[:i]").
        batch_size: images per forward pass.
        fast: fold batch norm, and on CPU use channels_last (False: torch-fidelity as is).
        allow_tf32: let cuDNN use TF32 on GPUs. Off by default: on an H200 it was
            2.4x faster but moved features by ~1e-3 (FID needs ~1e-5).
        cache: cache directory for converted weights.
    """

    name = "inception"
    dim = 2048

    def __init__(self, weights_path=None, *, allow_download: bool = False, device="cpu",
                 batch_size: int = 32, fast: bool = True, allow_tf32: bool = False, cache=None):
        from torch_fidelity.feature_extractor_inceptionv3 import (
            FeatureExtractorInceptionV3,
        )

        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        path = resolve_inception_weights(weights_path, allow_download=allow_download, cache=cache)
        # Validate as a pure tensor file first; torch-fidelity's own torch.load is not weights_only.
        load_inception_state_dict(path)
        self.weights_path = Path(path)
        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
        self.device, self.batch_size, self.allow_tf32 = torch.device(device), int(batch_size), bool(allow_tf32)
        # channels_last made CPU inference ~1.5x faster but cuDNN fp32 ~15% slower (H200).
        on_cpu = self.device.type == "cpu"
        self.memory_format = torch.channels_last if fast and on_cpu else torch.contiguous_format
        self.model = (_fold_batch_norm(model) if fast else model).to(device=device, memory_format=self.memory_format)

    @torch.inference_mode()
    def __call__(self, images) -> torch.Tensor:
        """images (N, C, H, W), uint8 or [0, 1] float -> float64 (N, 2048) on CPU."""
        pixels = images_to_uint8(images, channels=3)
        outputs = []
        # TF32 convolutions, cuDNN's default on Ampere and later, move features by ~1e-3.
        cudnn = torch.backends.cudnn
        with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                         allow_tf32=self.allow_tf32):
            for start in range(0, pixels.shape[0], self.batch_size):
                batch = pixels[start:start + self.batch_size].to(self.device)
                (features,) = self.model(batch.contiguous(memory_format=self.memory_format))
                outputs.append(features.to("cpu", torch.float64))
        return torch.cat(outputs) if outputs else torch.empty(0, self.dim, dtype=torch.float64)


class ClassifierExtractor:
    """Penultimate features of a DomainClassifier (``model`` or ``weights_path``)."""

    name = "classifier"

    def __init__(self, weights_path=None, *, model: DomainClassifier | None = None, device="cpu",
                 batch_size: int = 512):
        if (weights_path is None) == (model is None):
            raise ValueError("pass exactly one of weights_path or model")
        self.meta = {}
        if model is None:
            model, self.meta = load_classifier(weights_path, device=device)
        self.model, self.batch_size = model.eval(), int(batch_size)
        self.dim = int(model.config["feature_dim"])
        self.num_classes = int(model.config["num_classes"])

    def features_and_probs(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (features float64 (N, dim), probs float64 (N, K)) on CPU."""
        return classifier_features(self.model, images, self.batch_size)

    def __call__(self, images) -> torch.Tensor:
        """images (N, C, S, S) uint8 or [0, 1] float -> float64 (N, dim) on CPU."""
        return self.features_and_probs(images)[0]


class IdentityExtractor:
    """The samples themselves, flattened: (N, ...) -> float64 (N, dim)."""

    name = "identity"

    def __init__(self, dim: int = 2):
        if int(dim) < 1:
            raise ValueError(f"dim must be >= 1; got {dim}")
        self.dim = int(dim)

    def __call__(self, samples) -> torch.Tensor:
        if not isinstance(samples, torch.Tensor):
            samples = torch.from_numpy(np.asarray(samples))
        flat = samples.detach().to("cpu", torch.float64).reshape(samples.shape[0], -1)
        if flat.shape[1] != self.dim:
            raise ValueError(f"samples must flatten to {self.dim} values each; got {flat.shape[1]}")
        return flat


EXTRACTORS = {
    "inception": InceptionExtractor,
    "classifier": ClassifierExtractor,
    "identity": IdentityExtractor,
}


def build_feature_extractor(name: str, **options):
    """Build an extractor by name ("inception", "classifier", "identity") with its options."""
    if name not in EXTRACTORS:
        raise ValueError(f"name must be one of {sorted(EXTRACTORS)}; got {name!r}")
    try:
        inspect.signature(EXTRACTORS[name]).bind(**options)
    except TypeError as error:
        raise ValueError(f"invalid options for feature extractor {name!r}: {error}") from error
    return EXTRACTORS[name](**options)
