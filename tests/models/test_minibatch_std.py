"""models.layers.MinibatchStd against the statistic written out with loops (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from zerosum.models.layers import MinibatchStd


def _expected_stat(x: torch.Tensor, group: int) -> list[float]:
    """Per sample: mean over features of sqrt(biased var over its group + 1e-8); i in group i mod (N/G)."""
    n = x.shape[0]
    groups = n // group
    flat = x.reshape(n, -1).tolist()
    out = []
    for i in range(n):
        members = [flat[j] for j in range(n) if j % groups == i % groups]
        stds = []
        for f in range(len(flat[0])):
            values = [row[f] for row in members]
            mean = sum(values) / len(values)
            stds.append(math.sqrt(sum((v - mean) ** 2 for v in values) / len(values) + 1e-8))
        out.append(sum(stds) / len(stds))
    return out


@pytest.mark.parametrize("n, group_size, used", [
    (8, 4, 4),   # two groups of four: samples {0, 2, 4, 6} and {1, 3, 5, 7}
    (8, 8, 8),
    (3, 4, 3),   # fewer samples than the group: G = min(group, N), as StyleGAN2
    (6, 4, 6),   # 4 does not divide 6: one group of the whole batch
    (7, 2, 7),
    (1, 4, 1),
])
def test_images_get_one_channel_of_the_group_std(n, group_size, used):
    layer = MinibatchStd(group_size)
    assert layer.group_for(n) == used
    x = torch.randn(n, 2, 3, 3, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    out = layer(x)
    assert out.shape == (n, 3, 3, 3)
    assert torch.equal(out[:, :2], x)  # the input passes through untouched
    expected = torch.tensor(_expected_stat(x, used), dtype=torch.float64)
    # The appended channel is constant over the pixels; float64 means of 18 values and sqrts
    # agree with the loop's to a few ulps (the loop sums in another order).
    torch.testing.assert_close(out[:, 2], expected.view(n, 1, 1).expand(n, 3, 3), rtol=1e-12, atol=0)


def test_flat_vectors_get_one_extra_feature():
    x = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [1.0, 1.0, 1.0], [3.0, 3.0, 3.0]], dtype=torch.float64)
    out = MinibatchStd(2)(x)
    assert out.shape == (4, 4)
    # Groups {0, 2} and {1, 3}: stds |0-1|/2, 0, |2-1|/2 -> mean (0.5 + 0 + 0.5) / 3, and for the
    # other group (0.5 + 1 + 1.5) / 3 = 1; sqrt(v + 1e-8) moves each by at most 1e-4 (at v = 0).
    first = (math.sqrt(0.25 + 1e-8) + math.sqrt(1e-8) + math.sqrt(0.25 + 1e-8)) / 3
    second = (math.sqrt(0.25 + 1e-8) + math.sqrt(1.0 + 1e-8) + math.sqrt(2.25 + 1e-8)) / 3
    torch.testing.assert_close(out[:, 3], torch.tensor([first, second, first, second], dtype=torch.float64),
                               rtol=1e-15, atol=0)


def test_gradient_is_finite_where_a_group_agrees():
    x = torch.ones(4, 2, 2, 2, requires_grad=True)
    MinibatchStd(4)(x)[:, 2].sum().backward()  # variance 0: the 1e-8 keeps sqrt differentiable
    assert torch.isfinite(x.grad).all()


def test_bad_group_size_raises():
    with pytest.raises(ValueError, match="group_size"):
        MinibatchStd(0)
