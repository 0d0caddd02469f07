"""zerosum.models: the seed's exact shapes, DCGAN layouts, conditioning, validation."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

import pytest
import torch
from torch import nn

from zerosum.models import build_discriminator, build_generator, count_parameters

SEED_G = dict(z_dim=100, hidden=(), output="sigmoid", batch_norm=False)
SEED_D = dict(hidden=(100,), activation="sigmoid", dropout=0.5, batch_norm=False)


def _shapes(module: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for _, p in module.named_parameters()]


@pytest.mark.parametrize("sample_shape", [(1, 28, 28), (784,)])
def test_seed_generator_is_one_linear_layer_with_sigmoid(sample_shape):
    g = build_generator("mlp", sample_shape=sample_shape, **SEED_G)
    assert _shapes(g) == [(784, 100), (784,)]
    assert count_parameters(g) == 784 * 100 + 784
    x = g(torch.randn(5, 100))
    assert x.shape == (5, *sample_shape)
    assert x.min() >= 0 and x.max() <= 1


def test_seed_discriminator_is_784_100_1_sigmoid_with_dropout_after_hidden():
    d = build_discriminator("mlp", sample_shape=(1, 28, 28), **SEED_D)
    assert _shapes(d) == [(100, 784), (100,), (1, 100), (1,)]
    assert count_parameters(d) == 100 * 784 + 100 + 100 + 1
    kinds = [type(m) for m in d.body]
    assert kinds == [nn.Linear, nn.Sigmoid, nn.Dropout]
    assert d.body[2].p == 0.5
    assert d(torch.rand(5, 1, 28, 28)).shape == (5,)


CASES = [
    ("mlp", (2,)),
    ("mlp", (1, 8, 8)),
    ("mlp", (1, 28, 28)),
    ("dcgan", (1, 8, 8)),
    ("dcgan", (1, 28, 28)),
    ("dcgan", (3, 32, 32)),
    ("dcgan", (3, 64, 64)),
]


@pytest.mark.parametrize("num_classes", [0, 10])
@pytest.mark.parametrize("arch,sample_shape", CASES)
def test_shapes_and_backward(arch, sample_shape, num_classes):
    common = dict(sample_shape=sample_shape, num_classes=num_classes, hidden=(16, 16))
    g = build_generator(arch, z_dim=8, base_channels=4, **common)
    d = build_discriminator(arch, base_channels=4, **common)
    y = torch.randint(0, 10, (4,)) if num_classes else None
    x = g(torch.randn(4, 8), y)
    assert x.shape == (4, *sample_shape)
    assert x.abs().max() <= 1  # tanh output
    logits = d(x, y)
    assert logits.shape == (4,)
    logits.sum().backward()
    for name, p in [*g.named_parameters(), *d.named_parameters()]:
        assert p.grad is not None, name
    assert not {id(p) for p in g.parameters()} & {id(p) for p in d.parameters()}


def _spatial_sizes(g: nn.Module, z_dim: int) -> list[int]:
    """Side length after each BN2d or transposed conv in G's forward."""
    sizes: list[int] = []
    for m in g.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.ConvTranspose2d)):
            m.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
    g(torch.randn(2, z_dim))
    return sorted(set(sizes))


@pytest.mark.parametrize(
    "sample_shape,sizes", [((1, 28, 28), [7, 14, 28]), ((3, 32, 32), [4, 8, 16, 32])]
)
def test_dcgan_generator_upsamples_by_two_from_the_dcgan_start_size(sample_shape, sizes):
    g = build_generator("dcgan", sample_shape=sample_shape, z_dim=8, base_channels=4)
    assert _spatial_sizes(g, 8) == sizes


def test_dcgan_discriminator_has_no_batch_norm_on_first_conv_and_leaky_relu():
    d = build_discriminator("dcgan", sample_shape=(3, 32, 32), base_channels=4)
    body = list(d.body)
    assert isinstance(body[0], nn.Conv2d) and isinstance(body[1], nn.LeakyReLU)
    assert body[1].negative_slope == 0.2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in body) == 2
    assert [m.out_channels for m in body if isinstance(m, nn.Conv2d)] == [4, 8, 16]


def test_dcgan_init_is_normal_0_02_and_batch_norm_1_0_02():
    g = build_generator("dcgan", sample_shape=(3, 32, 32), z_dim=100, base_channels=32)
    ups = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    convs = torch.cat([m.weight.flatten() for m in ups])
    bn = torch.cat([m.weight for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(convs.std().item() - 0.02) < 0.001 and abs(convs.mean().item()) < 0.001
    assert abs(bn.mean().item() - 1.0) < 0.01 and 0.01 < bn.std().item() < 0.03
    for m in g.modules():
        if getattr(m, "bias", None) is not None:
            assert torch.all(m.bias == 0)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_projection_discriminator_logit_is_linear_plus_class_inner_product(arch):
    d = build_discriminator(arch, sample_shape=(1, 28, 28), num_classes=10, base_channels=4)
    d.eval()
    x, y = torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 2, 3, 9, 9])
    phi = d.body(x.flatten(1) if arch == "mlp" else x)
    expected = d.head.linear(phi).squeeze(1) + (d.head.embed.weight[y] * phi).sum(1)
    # float32 logits <= 0.2 from <= 392-term sums of size <= 1.6: ~sqrt(392) * 6e-8 * 1.6 = 2e-6 apart
    # if the forward pass sums in another order; the float32 defaults (atol 1e-5) fit.
    torch.testing.assert_close(d(x, y), expected)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_conditional_generator_depends_on_label(arch):
    g = build_generator(arch, sample_shape=(1, 28, 28), z_dim=8, num_classes=10, base_channels=4)
    g.eval()
    z = torch.randn(1, 8).repeat(2, 1)
    x = g(z, torch.tensor([3, 7]))
    # The label moves outputs by ~1e-3 (dcgan) to 0.1 (mlp); allclose's defaults (rtol 1e-5, atol
    # 1e-8) excuse only round-off, so "not close" means the label is used.
    assert not torch.allclose(x[0], x[1])


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_conditional_models_require_labels_and_unconditional_ignore_them(arch):
    kw = dict(sample_shape=(1, 8, 8), base_channels=4, hidden=(8,))
    g = build_generator(arch, z_dim=4, num_classes=3, **kw)
    d = build_discriminator(arch, num_classes=3, **kw)
    with pytest.raises(ValueError, match="y is required"):
        g(torch.randn(2, 4))
    with pytest.raises(ValueError, match="y is required"):
        d(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="y must have shape"):
        d(torch.randn(2, 1, 8, 8), torch.tensor([1, 2, 0]))
    g0 = build_generator(arch, z_dim=4, **kw).eval()
    z = torch.randn(2, 4)
    # The same float32 forward pass twice; the float32 defaults cover any summation-order difference.
    torch.testing.assert_close(g0(z, torch.tensor([0, 1])), g0(z))


def test_wrong_input_shapes_raise_value_error():
    g = build_generator("mlp", sample_shape=(2,), z_dim=4, hidden=(8,))
    d = build_discriminator("mlp", sample_shape=(2,), hidden=(8,))
    with pytest.raises(ValueError, match=r"z must have shape \(N, 4\)"):
        g(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        d(torch.randn(3, 1, 2))


BAD = [
    (dict(arch="resnet"), "arch='resnet'.*mlp, dcgan"),
    (dict(activation="gelu"), "activation='gelu'.*relu, leaky_relu, sigmoid, tanh"),
    (dict(arch="dcgan", sample_shape=(1, 30, 30)), "8x8, 14x14, 16x16, 28x28, 32x32"),
    (dict(arch="dcgan", sample_shape=(2,)), "square images"),
    (dict(arch="dcgan", sample_shape=(1, 28, 32)), "square images"),
    (dict(sample_shape=()), "sample_shape"),
    (dict(sample_shape=(1, 0)), "sample_shape"),
    (dict(dropout=-0.1), "dropout"),
    (dict(dropout=1.0), "dropout"),
    (dict(num_classes=-1), "num_classes"),
    (dict(hidden=(16, 0)), r"hidden\[1\]"),
    (dict(base_channels=0), "base_channels"),
]


@pytest.mark.parametrize("build", [build_generator, build_discriminator])
@pytest.mark.parametrize("bad,message", BAD)
def test_bad_options_raise_value_error_naming_the_option(build, bad, message):
    kw = {"arch": "mlp", "sample_shape": (1, 28, 28), **bad}
    if build is build_generator:
        kw["z_dim"] = 8
    arch = kw.pop("arch")
    with pytest.raises(ValueError, match=message):
        build(arch, **kw)


@pytest.mark.parametrize(
    "bad,message", [("output", "output='relu'.*tanh, sigmoid, identity"), ("z_dim", "z_dim=0")]
)
def test_bad_generator_options(bad, message):
    kw = dict(sample_shape=(2,), z_dim=8, output="tanh")
    kw[bad] = "relu" if bad == "output" else 0
    with pytest.raises(ValueError, match=message):
        build_generator("mlp", **kw)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_spectral_norm_bounds_weights_and_survives_two_forwards_before_backward(arch):
    d = build_discriminator(
        arch, sample_shape=(1, 8, 8), num_classes=3, hidden=(16, 16), base_channels=4,
        spectral_norm=True, batch_norm=False,
    )
    y = torch.tensor([0, 1, 2, 0])
    for _ in range(30):  # power iteration converges over forwards in train mode
        d(torch.randn(4, 1, 8, 8), y)
    layers = [m for m in d.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert layers and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    top = torch.linalg.matrix_norm(layers[-1].weight.detach().flatten(1), ord=2)
    assert abs(top.item() - 1.0) < 0.05
    # Real then fake, one backward: the pattern a D step uses.
    loss = d(torch.randn(4, 1, 8, 8), y).mean() - d(torch.randn(4, 1, 8, 8), y).mean()
    loss.backward()


def test_state_dict_loads_with_weights_only_and_model_pickles():
    d = build_discriminator("dcgan", sample_shape=(1, 28, 28), num_classes=10,
                            base_channels=4, spectral_norm=True)
    buf = io.BytesIO()
    torch.save(d.state_dict(), buf)
    buf.seek(0)
    d2 = build_discriminator("dcgan", sample_shape=(1, 28, 28), num_classes=10,
                             base_channels=4, spectral_norm=True)
    d2.load_state_dict(torch.load(buf, weights_only=True))
    g = build_generator("dcgan", sample_shape=(1, 28, 28), z_dim=8, base_channels=4).eval()
    z = torch.randn(1, 8)  # batch of one works in eval mode (BN uses running stats)
    # The same weights and float32 forward pass; the float32 defaults cover any summation-order difference.
    torch.testing.assert_close(pickle.loads(pickle.dumps(g))(z), g(z))


def test_models_and_losses_import_neither_ray_nor_mlflow():
    code = (
        "import sys, zerosum.models, zerosum.losses; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
