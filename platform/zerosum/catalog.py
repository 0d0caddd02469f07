"""zerosum's vocabulary: the datasets it knows and the names its registries accept.

Pure Python (no torch): `zerosum.config` builds its `Literal` choices from these
tuples, so `zerosum validate` never imports torch, and a test checks that each tuple
equals the registry that implements it (losses, models, optimisers, evals metrics).

A dataset is either *points* (flat vectors, here 2-D Gaussian mixtures) or *images*
(C, H, W). That one fact decides how samples are pictured (scatter or grid), which
features evaluate them (identity or a network) and what a served generator returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DataKind = Literal["points", "images"]


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset before any file is read.

    sample_shape: (D,) for points, (C, H, W) for images; None where it comes from the
    files (an image folder). num_classes: None where it comes from the files.
    on_disk: reads files under data.root. labelled: every sample has a class label.
    mixture: a Gaussian mixture with known modes (mode-coverage metrics apply).
    channels_of: each channel is an image of this other dataset, classified channel by
    channel by that dataset's classifier (stacked-mnist: mnist); None for the others.
    """

    name: str
    kind: DataKind
    sample_shape: tuple[int, ...] | None
    num_classes: int | None
    on_disk: bool = False
    labelled: bool = True
    mixture: bool = False
    channels_of: str | None = None


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("mnist", "images", (1, 28, 28), 10, on_disk=True),
        DatasetInfo("fashion-mnist", "images", (1, 28, 28), 10, on_disk=True),
        DatasetInfo("digits", "images", (1, 8, 8), 10),
        # VEEGAN's and PacGAN's Stacked MNIST: three MNIST digits as R, G, B; 1000 classes.
        DatasetInfo("stacked-mnist", "images", (3, 28, 28), 1000, on_disk=True, channels_of="mnist"),
        # ring8: VEEGAN's ring (radius 2, std 0.02); ring8-pacgan: PacGAN's (radius 1, std 0.01).
        DatasetInfo("ring8", "points", (2,), 8, mixture=True),
        DatasetInfo("ring8-pacgan", "points", (2,), 8, mixture=True),
        DatasetInfo("grid25", "points", (2,), 25, mixture=True),
        DatasetInfo("folder", "images", None, None, on_disk=True, labelled=False),
    )
}
DATASET_NAMES = tuple(DATASETS)
MIXTURES = tuple(name for name, info in DATASETS.items() if info.mixture)
# data.streaming: the datasets zerosum.streaming reads through Ray Data (a folder, and the IDX
# files, whose streamed and in-memory epochs the tests compare).
STREAMABLE_DATASETS = ("folder", "mnist", "fashion-mnist")

# Registries' names: zerosum.losses, zerosum.models, zerosum.train.build, evals.metrics.
LOSS_NAMES = ("minimax", "nonsaturating", "hinge", "wgan-gp", "lsgan", "rpgan", "wgan")
# zerosum.methods: what each method trains in its critic phase and in its generator phase
# (players by name: g = G, d = D or a feature critic, q = InfoGAN's Q head).
METHOD_PLAYERS: dict[str, dict[str, tuple[str, ...]]] = {
    "gan": {"critic": ("d",), "generator": ("g",)},
    "gmmn": {"critic": (), "generator": ("g",)},
    "mmd-gan": {"critic": ("d",), "generator": ("g",)},
    "infogan": {"critic": ("d",), "generator": ("g", "q")},
    # Translation (zerosum.methods.translation): G maps an input image to an output image.
    # pix2pix: G and a PatchGAN D that judges (input, output) pairs. cyclegan: G (X -> Y),
    # F (Y -> X) and a PatchGAN per domain. staged: a small G and D, then a pix2pix
    # super-resolver T and its pair critic D_t.
    "pix2pix": {"critic": ("d",), "generator": ("g",)},
    "cyclegan": {"critic": ("d_y", "d_x"), "generator": ("g", "f")},
    "staged": {"critic": ("d", "d_t"), "generator": ("g", "t")},
}
METHOD_NAMES = tuple(METHOD_PLAYERS)
# Methods whose G takes an image batch, not z: sampled, evaluated and served as translators.
TRANSLATION_METHODS = ("pix2pix", "cyclegan")
# zerosum.tasks: what a dataset is turned into. generate: samples alone. superres: the
# image area-downsampled by data.factor -> the image. complete: the image with a square
# of data.mask_size masked out -> the image. unpaired: data.source's images -> data's.
TASK_NAMES = ("generate", "superres", "complete", "unpaired")
TRANSLATOR_ARCHS = ("unet", "resnet")
# zerosum.augment: DiffAugment policies (Zhao et al. 2020).
AUGMENT_POLICIES = ("color", "translation", "cutout")
ARCH_NAMES = ("mlp", "dcgan")
# The square sides arch dcgan builds (zerosum.models.dcgan.SPATIAL_PLANS; a test ties them).
DCGAN_SIDES = (8, 14, 16, 28, 32, 64)
# SSIM's Gaussian window (evals.translation) is 11 px wide.
SSIM_MIN_SIDE = 11
ACTIVATION_NAMES = ("relu", "leaky_relu", "sigmoid", "tanh")
OUTPUT_NAMES = ("tanh", "sigmoid", "identity")
OPTIMIZER_NAMES = ("adam", "adamw", "sgd", "rmsprop")
LR_DECAY_NAMES = ("constant", "linear", "cosine")
EVAL_METRICS = ("fid", "kid", "mmd", "modes", "classes", "psnr", "ssim", "accuracy")
# Metrics of translation against a paired target (psnr, ssim) or the input's label (accuracy);
# the others compare two distributions, which is all `zerosum eval` is given.
TRANSLATION_METRICS = ("psnr", "ssim", "accuracy")
DISTRIBUTION_METRICS = tuple(m for m in EVAL_METRICS if m not in TRANSLATION_METRICS)
FEATURE_KINDS = ("auto", "classifier", "inception", "identity")

# One default per number, used by job specs and by `zerosum eval` alike.
MMD_PERMUTATIONS = 200
EVAL_NUM_SAMPLES = 1000
# torch-fidelity's KID protocol (Binkowski et al. 2018): 100 subsets of 1000 samples.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def dataset_info(name: str) -> DatasetInfo:
    """The table row of a dataset; a ValueError lists the known names."""
    if name not in DATASETS:
        raise ValueError(f"data.name: unknown dataset {name!r}; allowed: {', '.join(DATASET_NAMES)}")
    return DATASETS[name]


def is_image_data(name: str) -> bool:
    """True for datasets of (C, H, W) images, False for points."""
    return dataset_info(name).kind == "images"


def kind_of_shape(sample_shape: tuple[int, ...]) -> DataKind:
    """'images' for (C, H, W), 'points' for (D,): for samples whose dataset is not named."""
    return "images" if len(sample_shape) == 3 else "points"
