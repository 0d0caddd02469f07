"""evals.translation: PSNR against its closed form, SSIM's fixed points, accuracy by hand."""

from __future__ import annotations

import math

import pytest
import torch

from evals.translation import PSNR_CAP_DB, accuracy_per_image, psnr_per_image, ssim_per_image, translation_metrics


def test_psnr_is_ten_log10_of_one_over_the_mse():
    target = torch.zeros(2, 1, 4, 4)
    outputs = torch.full((2, 1, 4, 4), 0.1)
    outputs[1] = 0.25
    # MSE 0.01 and 0.0625: 20 dB and 10*log10(16) dB. torchmetrics takes 10/ln(10) as a float32
    # constant (4.5e-8 relative off), beside float32 0.1 (1.5e-9): relative 1e-6 covers both.
    expected = torch.tensor([10 * math.log10(1 / 0.1**2), 10 * math.log10(16.0)], dtype=torch.float64)
    torch.testing.assert_close(psnr_per_image(outputs, target), expected, rtol=1e-6, atol=0)


def test_psnr_of_an_exact_copy_is_capped():
    image = torch.rand(1, 1, 8, 8)
    assert psnr_per_image(image, image.clone()).item() == PSNR_CAP_DB


def test_ssim_is_one_for_a_copy_and_below_for_noise_and_negative_for_an_inverse():
    torch.manual_seed(0)
    image = torch.rand(3, 1, 28, 28)
    noisy = (image + 0.2 * torch.randn_like(image)).clamp(0, 1)
    # SSIM's fraction is exactly 1 when both images agree, up to float64 rounding.
    torch.testing.assert_close(ssim_per_image(image, image), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-12)
    assert (ssim_per_image(noisy, image) < 0.9).all()
    assert (ssim_per_image(1 - image, image) < 0).all()


def test_accuracy_counts_top_classes_equal_to_labels():
    probs = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    correct = accuracy_per_image(probs, torch.tensor([0, 1, 1, 0]))
    assert correct.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert translation_metrics(accuracy=correct) == {"eval/accuracy": 0.5}


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="outputs and targets"):
        psnr_per_image(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 8, 8))
