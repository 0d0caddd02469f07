"""zerosum.augment (DiffAugment): shapes, seeded reproducibility, gradients, and each policy's
geometry or formula checked by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zerosum.augment import AUGMENTATIONS, diff_augment, parse_policy

POLICIES = ["color", "translation", "cutout", "color,translation,cutout"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 8, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=_gen(seed)) * 2 - 1


@pytest.mark.parametrize("policy", POLICIES)
def test_shape_is_kept_and_seeds_decide_the_output(policy):
    x = _images()
    a = diff_augment(x, policy, _gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, diff_augment(x, policy, _gen(1)))  # same seed: the same draws, exactly
    assert not torch.equal(a, diff_augment(x, policy, _gen(2)))


def test_the_global_rng_is_not_used():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    diff_augment(_images(), "color,translation,cutout", _gen(1))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("policy", POLICIES)
def test_gradients_reach_a_generator_through_every_policy(policy):
    torch.manual_seed(0)
    g = nn.Linear(4, 3 * 8 * 8)  # a G: noise -> image in [-1, 1]
    x = torch.tanh(g(torch.randn(6, 4))).view(6, 3, 8, 8)
    out = diff_augment(x, policy, _gen(3))
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(g.weight.grad).all() and g.weight.grad.abs().sum() > 0


def _shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[r, c] = img[r + dy, c + dx] where inside, else 0; img (C, H, W)."""
    _, h, w = img.shape
    out = torch.zeros_like(img)
    for r in range(h):
        for c in range(w):
            if 0 <= r + dy < h and 0 <= c + dx < w:
                out[:, r, c] = img[:, r + dy, c + dx]
    return out


def test_translation_shifts_each_image_by_at_most_an_eighth_with_zero_fill():
    n, h, w = 24, 16, 8
    # Distinct nonzero pixels, so a shift is identified by the values alone.
    x = (torch.arange(n * 2 * h * w, dtype=torch.float64) + 1).view(n, 2, h, w)
    out = diff_augment(x, "translation", _gen(5))
    shifts = set()
    for i in range(n):
        found = [(dy, dx) for dy in range(-(h // 8), h // 8 + 1) for dx in range(-(w // 8), w // 8 + 1)
                 if torch.equal(out[i], _shift(x[i], dy, dx))]  # exact: a gather copies values
        assert len(found) == 1, i
        shifts.add(found[0])
    assert len(shifts) > 3  # random per sample, not one shift for the batch


def test_translation_draws_its_shifts_from_the_generator_rows_first():
    n, h, w = 5, 16, 16
    x = (torch.arange(n * h * w, dtype=torch.float64) + 1).view(n, 1, h, w)
    out = diff_augment(x, "translation", _gen(6))
    g = _gen(6)
    dy = torch.randint(-2, 3, (n,), generator=g)
    dx = torch.randint(-2, 3, (n,), generator=g)
    for i in range(n):
        assert torch.equal(out[i], _shift(x[i], int(dy[i]), int(dx[i])))


def test_cutout_zeroes_one_clipped_square_of_half_the_side():
    n, h, w = 64, 16, 12
    out = diff_augment(torch.ones(n, 2, h, w), "cutout", _gen(7))
    assert torch.equal(out[:, 0], out[:, 1])  # the same square in every channel
    full = 0
    for i in range(n):
        zero = out[i, 0] == 0
        rows, cols = torch.nonzero(zero.any(dim=1)).flatten(), torch.nonzero(zero.any(dim=0)).flatten()
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        # One axis-aligned rectangle, everything else kept.
        assert int(zero.sum()) == (r1 - r0) * (c1 - c0) and bool(zero[r0:r1, c0:c1].all())
        assert set(out[i, 0].unique().tolist()) <= {0.0, 1.0}
        # (H // 2) x (W // 2), clipped only where it touches the border; at least half of each
        # side stays inside, since the centre lies within the image.
        assert (r1 - r0 == h // 2) or r0 == 0 or r1 == h
        assert (c1 - c0 == w // 2) or c0 == 0 or c1 == w
        assert h // 4 <= r1 - r0 <= h // 2 and w // 4 <= c1 - c0 <= w // 2
        full += (r1 - r0, c1 - c0) == (h // 2, w // 2)
    assert full > n // 8  # most squares lie fully inside (9/17 x 7/13 of centres, ~28%)


def test_color_on_an_image_constant_per_channel_follows_the_formulas():
    n = 6
    a = torch.tensor([0.5, -0.25, 0.0], dtype=torch.float64)  # the channels' constant values
    x = a.view(1, 3, 1, 1).expand(n, 3, 4, 5).clone()
    out = diff_augment(x, "color", _gen(8))
    g = _gen(8)  # brightness, saturation, contrast: one U[0, 1) per sample each, in that order
    b = torch.rand(n, generator=g, dtype=torch.float64) - 0.5
    s = torch.rand(n, generator=g, dtype=torch.float64) * 2
    k = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    # brightness: a_c + b. saturation around the channel mean m + b: m + b + (a_c - m) s.
    # contrast around the image mean, still m + b: m + b + (a_c - m) s k.
    m = a.mean()
    expected = m + b.view(n, 1) + (a - m).view(1, 3) * (s * k).view(n, 1)
    # float64, ~10 operations on O(1) values (means over 60 and 3 values): a few ulps.
    torch.testing.assert_close(out, expected.view(n, 3, 1, 1).expand(n, 3, 4, 5), rtol=1e-13, atol=1e-15)


def test_color_on_a_grey_image_is_brightness_only():
    n = 4
    x = torch.full((n, 3, 2, 2), 0.25, dtype=torch.float64)
    out = diff_augment(x, "color", _gen(9))
    b = torch.rand(n, generator=_gen(9), dtype=torch.float64) - 0.5
    # Saturation and contrast scale deviations from means that are the pixel itself: zero.
    torch.testing.assert_close(out, (0.25 + b).view(n, 1, 1, 1).expand_as(x), rtol=1e-15, atol=1e-16)


def test_policies_parse_like_the_reference():
    assert parse_policy("") == ()
    assert parse_policy("color,translation,cutout") == tuple(AUGMENTATIONS)
    assert parse_policy("cutout, color") == ("cutout", "color")
    x = _images()
    assert diff_augment(x, "", _gen(0)) is x
    with pytest.raises(ValueError, match="unknown parts"):
        diff_augment(x, "color,flip", _gen(0))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        diff_augment(torch.zeros(4, 2), "color", _gen(0))
