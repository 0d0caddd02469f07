"""Stacked MNIST: each channel read by the MNIST classifier, in `channel_digits` and in the
in-training `classes` metric (evaluation/stacked.py, evaluation/channels.py)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from evals.classifier import fit_classifier, save_classifier
from evals.metrics import class_metrics
from evals.modes import class_histogram, stacked_digits_histogram
from zerosum.config import DataSpec, validate_job
from zerosum.data import load_dataset
from zerosum.errors import ConfigError
from zerosum.evaluation import stacked
from zerosum.evaluation.channels import ChannelClassifierExtractor, joint_class_probs
from zerosum.evaluation.featurizer import featurizer_path, with_featurizer
from zerosum.evaluation.plan import build_extractor
from zerosum.evaluation.reference import extract

CHECKED = 300  # stacked images scored per test: 900 digits


@pytest.fixture(scope="module")
def quick_classifier(tmp_path_factory, shared_data):
    """An MNIST classifier trained for seconds (4,000 digits, 2 epochs): the tests need a
    classifier and its measured accuracy, not zerosum's 99% one."""
    data = load_dataset(DataSpec(name="mnist", root=shared_data / "mnist", scale="unit", limit=4000))
    model = fit_classifier(data.samples, data.labels, epochs=2, seed=0)
    return save_classifier(model, tmp_path_factory.mktemp("classifier") / "mnist.pt", {"dataset": "mnist"})


@pytest.fixture
def cached(tmp_path, monkeypatch, quick_classifier):
    """A zerosum cache whose mnist featurizer is the quick classifier."""
    monkeypatch.setenv("ZEROSUM_CACHE", str(tmp_path / "cache"))
    path = featurizer_path(DataSpec.model_construct(name="mnist"))
    path.parent.mkdir(parents=True)
    shutil.copy(quick_classifier, path)
    return path


@pytest.fixture(scope="module")
def stacked_test(shared_data):
    spec = DataSpec(name="stacked-mnist", root=shared_data / "mnist", scale="unit")
    test = load_dataset(spec, "test")
    return test.samples[:CHECKED], test.labels[:CHECKED]


def test_channel_digits_agree_with_labels_at_the_accuracy_cubed(cached, shared_data, stacked_test):
    images, labels = stacked_test
    accuracy = stacked.mnist_test_accuracy(shared_data / "mnist")
    digits = stacked.channel_digits(images)
    assert digits.shape == (CHECKED, 3) and digits.dtype == torch.int64
    truth = torch.stack([labels // 100, labels // 10 % 10, labels % 10], dim=1)
    # Each channel is a digit drawn with replacement from the 10,000 test digits the accuracy
    # was measured on, independently: each is read right with probability `accuracy`, all
    # three with accuracy ** 3. 4 binomial standard errors (n = 900 digits, 300 images).
    per_digit, per_image = (digits == truth).double().mean(), (digits == truth).all(dim=1).double().mean()
    assert abs(per_digit - accuracy) < 4 * math.sqrt(accuracy * (1 - accuracy) / (3 * CHECKED))
    expected = accuracy ** 3
    assert abs(per_image - expected) < 4 * math.sqrt(expected * (1 - expected) / CHECKED)
    # uint8 images read the same as [0, 1] floats (the protocol quantises floats to k/255).
    assert torch.equal(stacked.channel_digits(images.mul(255).round().to(torch.uint8)), digits)


def test_the_classifier_is_trained_once_when_absent(tmp_path, monkeypatch, quick_classifier, shared_data, stacked_test):
    monkeypatch.setenv("ZEROSUM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="zerosum featurizer train --dataset mnist"):
        stacked.channel_digits(stacked_test[0][:4])
    trained = []

    def quick_train(data, out):
        trained.append(data.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(quick_classifier, out)

    monkeypatch.setattr(stacked, "train_featurizer", quick_train)
    first = stacked.channel_digits(stacked_test[0][:4], root=shared_data / "mnist")
    assert torch.equal(stacked.channel_digits(stacked_test[0][:4]), first)
    assert trained == ["mnist"]


def stacked_job(shared_data, **evals) -> dict:
    return {"name": "stacked", "data": {"name": "stacked-mnist", "root": str(shared_data / "mnist"), "scale": "unit"},
            "schedule": {"max_rounds": 1}, "eval": {"metrics": ["classes", "fid"], **evals}}


def test_stacked_mnist_shares_the_mnist_featurizer(cached, shared_data):
    spec = with_featurizer(validate_job(stacked_job(shared_data)))
    assert spec.eval.featurizer_path == cached


def test_classes_metric_counts_the_channel_digit_triples(cached, shared_data, stacked_test):
    images, _ = stacked_test
    spec = validate_job(stacked_job(shared_data, featurizer_path=str(cached)))
    extractor = build_extractor(spec, (3, 28, 28), torch.device("cpu"))
    assert isinstance(extractor, ChannelClassifierExtractor)
    features, probs = extract(extractor, images, "unit", is_image=True)
    # Three channels' 128 penultimate features side by side; 10 ** 3 joint classes.
    assert features.shape == (CHECKED, 384) and probs.shape == (CHECKED, 1000)
    # float64: products of three softmax rows that each sum to 1 within ~1e-16.
    np.testing.assert_allclose(probs.sum(dim=1).numpy(), 1.0, rtol=1e-12)
    # Exact: the joint argmax is the triple of channel argmaxes, so the hard histogram of
    # the `classes` metric counts what `channel_digits` reads (both divide counts by 300).
    counts = stacked_digits_histogram(stacked.channel_digits(images).numpy())
    np.testing.assert_array_equal(class_histogram(probs), counts / CHECKED)
    found = class_metrics(probs)
    assert found["eval/classes_covered"] == (counts > 0).sum()


def test_joint_class_probs_by_hand():
    # Two channels of two classes: P(1, 0) = 0.75 * 0.5 at index 1 * 2 + 0. Exact: powers of two.
    probs = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]], dtype=torch.float64)
    np.testing.assert_array_equal(joint_class_probs(probs).numpy(), [[0.125, 0.125, 0.375, 0.375]])


def test_a_three_channel_featurizer_is_refused(tmp_path):
    three = fit_classifier(torch.rand(8, 3, 28, 28), torch.arange(8) % 2, epochs=1, batch_size=4)
    path = save_classifier(three, tmp_path / "rgb.pt")
    with pytest.raises(ConfigError, match="eval.featurizer_path: .* one-channel classifier"):
        ChannelClassifierExtractor(path)
