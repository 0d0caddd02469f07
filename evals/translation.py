"""How good translated images are: PSNR and SSIM against paired targets, and a classifier's
accuracy on the outputs against the inputs' labels.

PSNR and SSIM are torchmetrics' (`torchmetrics.functional.image`), per image, on images
in [0, 1] (data_range 1). SSIM is Wang et al. 2004's with torchmetrics' defaults: a
Gaussian window of 11 px (sigma 1.5), reflect padding, the mean of the whole map. So it
needs images of 11 px or more, and its values compare between zerosum runs, not with
scikit-image's defaults (a 7x7 uniform window, the borders cropped). Keys: ``eval/psnr``
(dB), ``eval/ssim``, ``eval/accuracy``: means over images.
"""

from __future__ import annotations

import torch

__all__ = ["PSNR_CAP_DB", "accuracy_per_image", "psnr_per_image", "ssim_per_image", "translation_metrics"]

# An output equal to its target has infinite PSNR; capped so that a mean stays finite.
# 100 dB is an MSE of 1e-10 on [0, 1] pixels: only a copy of the target comes that close.
PSNR_CAP_DB = 100.0


def _check_pair(outputs: torch.Tensor, targets: torch.Tensor) -> None:
    if outputs.shape != targets.shape or outputs.dim() != 4:
        raise ValueError(f"outputs and targets must both be (N, C, H, W); got {tuple(outputs.shape)} "
                         f"and {tuple(targets.shape)}")


def psnr_per_image(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """float (N, C, H, W) each, in [0, 1] -> PSNR float64 (N,) in dB, capped at PSNR_CAP_DB."""
    _check_pair(outputs, targets)
    # torchmetrics is imported where it is used: it loads torchvision, which every
    # training process would otherwise pay for at start-up (about 1.6 s), translating or not.
    from torchmetrics.functional.image import peak_signal_noise_ratio

    psnr = peak_signal_noise_ratio(outputs.double(), targets.double(), data_range=1.0, reduction="none",
                                   dim=(1, 2, 3))
    return psnr.clamp(max=PSNR_CAP_DB)


def ssim_per_image(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """float (N, C, H, W) each, in [0, 1] -> SSIM float64 (N,) in [-1, 1]."""
    _check_pair(outputs, targets)
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(outputs.double(), targets.double(), data_range=1.0,
                                               reduction="none")


def accuracy_per_image(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, K) and labels int (N,) -> 1.0 where the top class is the label, float64 (N,)."""
    if probs.dim() != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"probs must be (N, K) and labels (N,); got {tuple(probs.shape)} and {tuple(labels.shape)}")
    return (probs.argmax(dim=1) == labels.to(probs.device)).double()


def translation_metrics(psnr: torch.Tensor | None = None, ssim: torch.Tensor | None = None,
                        accuracy: torch.Tensor | None = None) -> dict[str, float]:
    """Means of the per-image values given (psnr_per_image, ssim_per_image,
    accuracy_per_image): {"eval/psnr", "eval/ssim", "eval/accuracy"}."""
    values = {"eval/psnr": psnr, "eval/ssim": ssim, "eval/accuracy": accuracy}
    return {key: float(rows.double().mean()) for key, rows in values.items() if rows is not None}
