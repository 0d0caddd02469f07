"""The domain classifier: MNIST accuracy, features, probabilities and its file format."""

from __future__ import annotations

import time

import pytest
import torch

from evals.classifier import (
    DomainClassifier,
    accuracy,
    classifier_features,
    fit_classifier,
    load_classifier,
    save_classifier,
)
from evals.features import ClassifierExtractor, build_feature_extractor
from evals_fixtures import mnist, torch_threads  # noqa: F401  (mnist is a fixture)


@pytest.fixture(scope="module")
def mnist_classifier(mnist):
    """One epoch on the full 60k training set: about 18 s on one thread."""
    start = time.perf_counter()
    epochs = []
    with torch_threads(1):
        model = fit_classifier(mnist["train_images"], mnist["train_labels"], epochs=1, seed=0,
                               on_epoch=epochs.append)
    assert len(epochs) == 1 and epochs[0]["loss"] < 0.5
    model.training_seconds = time.perf_counter() - start
    return model


def test_reaches_98_percent_on_mnist_test_set(mnist, mnist_classifier):
    test_accuracy = accuracy(mnist_classifier, mnist["test_images"], mnist["test_labels"])
    assert test_accuracy >= 0.98, f"test accuracy {test_accuracy:.4f}"


def test_features_and_probabilities(mnist, mnist_classifier):
    images = mnist["test_images"][:64]
    features, probs = classifier_features(mnist_classifier, images, batch_size=25)
    assert features.shape == (64, 128) and probs.shape == (64, 10)
    assert features.dtype == probs.dtype == torch.float64
    assert (features >= 0).all()
    # float64 softmax over 10 classes: sums to 1 within ~10 eps64 = 2e-15 (float32 would miss by ~1e-7).
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(64, dtype=torch.float64), rtol=0, atol=1e-13)
    # The [0, 1] float protocol gives the same answer as uint8.
    features_float, _ = classifier_features(mnist_classifier, images.float() / 255)
    # Same pixels, other batches (512 vs 25). These are float32 network outputs widened to float64,
    # so float64's default 1e-7 does not apply: features <= 16 come from a 1568-term layer with
    # sum |w x| <= 34, ~sqrt(1568) * 6e-8 * 34 = 8e-5 apart between summation orders.
    torch.testing.assert_close(features_float, features, rtol=0, atol=1e-4)


def test_save_load_round_trip(tmp_path, mnist, mnist_classifier):
    meta = {"dataset": "mnist", "test_accuracy": 0.99, "epochs": 1, "seed": 0}
    path = save_classifier(mnist_classifier, tmp_path / "clf" / "mnist.pt", meta)
    assert not list(path.parent.glob(".*.tmp"))
    model, loaded_meta = load_classifier(path)
    assert loaded_meta == meta and not model.training
    images = mnist["test_images"][:32]
    # Same weights and batches: equal unless the BLAS reorders. float32 outputs widened to float64,
    # so as above ~8e-5 at most between summation orders (the probabilities move less).
    torch.testing.assert_close(classifier_features(model, images), classifier_features(mnist_classifier, images),
                               rtol=0, atol=1e-4)
    extractor = build_feature_extractor("classifier", weights_path=path)
    assert isinstance(extractor, ClassifierExtractor) and extractor.dim == 128 and extractor.num_classes == 10
    assert extractor.meta == meta
    # As above: the same float32 network and batches, ~8e-5 at most between summation orders.
    torch.testing.assert_close(extractor(images), classifier_features(model, images)[0], rtol=0, atol=1e-4)


@pytest.mark.parametrize("channels, size", [(1, 8), (3, 32), (1, 28)])
def test_shapes_for_each_domain(channels, size):
    model = DomainClassifier(channels, 10, size).eval()
    with torch.no_grad():
        logits = model(torch.rand(3, channels, size, size))
        features = model.features(torch.rand(3, channels, size, size))
    assert logits.shape == (3, 10) and features.shape == (3, 128)


def test_fit_is_seeded_and_leaves_global_rng_alone():
    images = torch.rand(64, 1, 8, 8)
    labels = torch.arange(64) % 4
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = fit_classifier(images, labels, epochs=1, batch_size=16, seed=5)
    assert torch.equal(torch.rand(1), before)
    second = fit_classifier(images, labels, epochs=1, batch_size=16, seed=5)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: DomainClassifier(2, 10, 28), "in_channels"),
        (lambda: fit_classifier(torch.rand(4, 1, 8, 8), [0, 1, 2, 7], epochs=0), "epochs"),
        (lambda: fit_classifier(torch.rand(4, 1, 8, 8), [0, 1], epochs=1), "one entry per image"),
        (lambda: fit_classifier(torch.rand(4, 1, 8, 6), [0, 1, 0, 1]), "square"),
        (lambda: DomainClassifier(1, 10, 8)(torch.rand(2, 1, 28, 28)), r"\(N, 1, 8, 8\)"),
        (lambda: save_classifier(DomainClassifier(1, 10, 8), "/tmp/x.pt", {"bad": [1]}), "meta values"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
