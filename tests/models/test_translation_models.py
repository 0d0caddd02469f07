"""The translation players: U-Net, residual translator and PatchGAN shapes at 28x28; the
pair critic reads its input; the lift is bicubic upsampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zerosum.models.translation import PairDiscriminator, PatchDiscriminator, build_translator, unet_depth


@pytest.mark.parametrize("side, depth", [(28, 2), (32, 3), (8, 1), (7, 0), (14, 1)])
def test_unet_halves_while_the_side_stays_even_and_at_least_4(side, depth):
    assert unet_depth(side) == depth


@pytest.mark.parametrize("arch", ["unet", "resnet"])
@pytest.mark.parametrize("input_shape", [(1, 7, 7), (1, 14, 14), (1, 28, 28)])
def test_translators_map_any_divisor_side_to_28x28(arch, input_shape):
    translator = build_translator(arch, input_shape=input_shape, output_shape=(1, 28, 28), base_channels=8)
    out = translator(torch.randn(5, *input_shape))
    assert out.shape == (5, 1, 28, 28)
    assert out.abs().max() <= 1.0  # tanh output


def test_unet_skips_carry_the_input_at_full_resolution():
    """A U-Net's head reads the stem's features beside the decoder's: a change in one input
    pixel changes the output at that pixel (the bottleneck alone is 7x7)."""
    torch.manual_seed(0)
    translator = build_translator("unet", input_shape=(1, 28, 28), output_shape=(1, 28, 28), base_channels=8,
                                  batch_norm=False).eval()
    x = torch.zeros(1, 1, 28, 28)
    bumped = x.clone()
    bumped[0, 0, 3, 3] = 1.0
    diff = (translator(bumped) - translator(x)).abs()[0, 0]
    assert diff[3, 3] > 0 and diff[20:, 20:].max() == 0


def test_patch_discriminator_gives_a_7x7_map_of_logits_at_28x28():
    d = PatchDiscriminator(2, 28, base_channels=8, batch_norm=True, spectral_norm=False)
    assert d(torch.randn(4, 2, 28, 28)).shape == (4, 49)


def test_pair_critic_reads_the_input_not_only_the_output():
    torch.manual_seed(0)
    d = PairDiscriminator(condition_channels=1, image_channels=1, side=28, base_channels=8).eval()
    image = torch.randn(3, 1, 28, 28)
    condition = torch.randn(3, 1, 28, 28)
    swapped = condition.roll(1, dims=0)  # each output beside another example's input
    assert not torch.allclose(d(condition, image), d(swapped, image))
    # The same pair gives the same logits (eval mode: BN uses its running statistics).
    assert torch.equal(d(condition, image), d(condition.clone(), image.clone()))


def test_the_lift_is_clamped_bicubic_upsampling():
    translator = build_translator("unet", input_shape=(1, 7, 7), output_shape=(1, 28, 28), base_channels=8)
    small = torch.rand(2, 1, 7, 7) * 2 - 1
    expected = F.interpolate(small, size=(28, 28), mode="bicubic", align_corners=False).clamp(-1, 1)
    assert torch.equal(translator.condition(small), expected)


def test_translator_refuses_inputs_of_another_shape():
    translator = build_translator("resnet", input_shape=(1, 7, 7), output_shape=(1, 28, 28), base_channels=8)
    with pytest.raises(ValueError, match=r"inputs must have shape \(N, 1, 7, 7\)"):
        translator(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="side divides"):
        build_translator("unet", input_shape=(1, 6, 6), output_shape=(1, 28, 28))


def test_dcgan_sides_in_the_catalog_are_the_ones_dcgan_builds():
    from zerosum.catalog import DCGAN_SIDES
    from zerosum.models.dcgan import SPATIAL_PLANS

    assert DCGAN_SIDES == tuple(sorted(SPATIAL_PLANS))
