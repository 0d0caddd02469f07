"""The catalog's names are the registries' names: a spec choice always has an implementation."""

from typing import get_args

import pytest
import torch

from evals.metrics import FEATURE_METRICS
from zerosum import catalog
from zerosum.config import DataSpec, DiscriminatorSpec, EvalSpec, GeneratorSpec, LossSpec, OptimizerSpec, OptimSpec
from zerosum.data import describe_dataset, load_dataset
from zerosum.losses import d_loss, g_loss
from zerosum.models import build_discriminator, build_generator
from zerosum.train.build import LR_DECAYS, OPTIMIZERS
from zerosum_testing import SHARED_DATA


def choices(model, field: str) -> tuple:
    return get_args(model.model_fields[field].annotation)


def test_config_choices_are_the_catalog():
    assert choices(DataSpec, "name") == catalog.DATASET_NAMES
    assert choices(LossSpec, "name") == catalog.LOSS_NAMES
    assert choices(OptimizerSpec, "name") == catalog.OPTIMIZER_NAMES
    assert choices(GeneratorSpec, "arch") == choices(DiscriminatorSpec, "arch") == catalog.ARCH_NAMES
    assert choices(GeneratorSpec, "output") == catalog.OUTPUT_NAMES
    assert choices(EvalSpec, "features") == catalog.FEATURE_KINDS


def test_every_optimizer_name_has_an_optimizer():
    assert tuple(OPTIMIZERS) == catalog.OPTIMIZER_NAMES


def test_every_lr_decay_name_has_a_decay():
    assert tuple(LR_DECAYS) == choices(OptimSpec, "decay") == catalog.LR_DECAY_NAMES


@pytest.mark.parametrize("name", catalog.LOSS_NAMES)
def test_every_loss_name_computes_both_losses(name):
    logits = torch.tensor([0.5, -1.0])
    assert torch.isfinite(d_loss(name, logits, -logits)) and torch.isfinite(g_loss(name, logits, real_logits=-logits))


@pytest.mark.parametrize("arch", catalog.ARCH_NAMES)
def test_every_arch_builds_both_players(arch):
    generator = build_generator(arch, sample_shape=(1, 28, 28), z_dim=8, activation="relu")
    discriminator = build_discriminator(arch, sample_shape=(1, 28, 28))
    assert discriminator(generator(torch.randn(3, 8), None), None).shape == (3,)


def test_eval_metrics_are_evals_metrics_plus_modes_classes_and_translations():
    assert set(catalog.EVAL_METRICS) == set(FEATURE_METRICS) | {"modes", "classes"} | set(catalog.TRANSLATION_METRICS)
    # evals.translation computes each translation metric, under its eval/ key.
    from evals.translation import translation_metrics

    rows = {name: torch.ones(2) for name in catalog.TRANSLATION_METRICS}
    assert set(translation_metrics(**rows)) == {f"eval/{name}" for name in catalog.TRANSLATION_METRICS}


def test_translator_archs_and_methods_are_the_registries():
    from zerosum.config import TranslatorSpec
    from zerosum.methods import METHODS

    assert choices(TranslatorSpec, "arch") == catalog.TRANSLATOR_ARCHS
    assert tuple(METHODS) == catalog.METHOD_NAMES
    assert {name for name, cls in METHODS.items() if cls.__module__.endswith(("pix2pix", "cyclegan"))} == set(
        catalog.TRANSLATION_METHODS)


@pytest.mark.parametrize("name", [n for n, info in catalog.DATASETS.items() if n != "folder"])
def test_the_dataset_table_says_what_loading_finds(name):
    info = catalog.DATASETS[name]
    # stacked-mnist reads the MNIST files (channels_of).
    root = SHARED_DATA / (info.channels_of or name) if info.on_disk else None
    spec = DataSpec(name=name, root=root, num_samples=200, limit=200)
    dataset = load_dataset(spec)
    assert dataset.sample_shape == info.sample_shape
    assert dataset.num_classes == info.num_classes
    assert describe_dataset(spec) == (info.sample_shape, info.num_classes)
    assert catalog.kind_of_shape(dataset.sample_shape) == info.kind


def test_mixtures_are_evals_mixtures_and_report_every_tuned_key():
    from evals.metrics import mixture_metrics
    from evals.modes import MIXTURES
    from zerosum.tune.schema import METRIC_SOURCES

    assert set(catalog.MIXTURES) == set(MIXTURES)
    for name in catalog.MIXTURES:
        centres, _ = MIXTURES[name]()
        assert len(centres) == catalog.DATASETS[name].num_classes
        found = mixture_metrics(centres, name)
        # A campaign may rank trials by any key the metric reports.
        assert {key for key, source in METRIC_SOURCES.items() if source == "modes"} == set(found)


@pytest.mark.parametrize("name", [n for n, info in catalog.DATASETS.items() if info.channels_of])
def test_a_dataset_of_channels_has_one_classified_dataset_per_channel(name):
    info = catalog.DATASETS[name]
    digits = catalog.DATASETS[info.channels_of]
    channels, *side = info.sample_shape
    assert digits.sample_shape == (1, *side) and info.num_classes == digits.num_classes ** channels


def test_dcgan_builds_both_players_for_every_image_shape():
    shapes = {info.sample_shape for info in catalog.DATASETS.values() if info.kind == "images" and info.sample_shape}
    for shape in shapes:
        generator = build_generator("dcgan", sample_shape=shape, z_dim=8, base_channels=4)
        discriminator = build_discriminator("dcgan", sample_shape=shape, base_channels=4)
        fakes = generator(torch.randn(2, 8), None)
        assert fakes.shape == (2, *shape) and discriminator(fakes, None).shape == (2,)


def test_augment_policies_are_diffaugments():
    from zerosum.augment import AUGMENTATIONS

    assert tuple(AUGMENTATIONS) == catalog.AUGMENT_POLICIES
