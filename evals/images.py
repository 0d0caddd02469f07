"""The image input protocol that every evals feature extractor applies.

Images are (N, C, H, W), uint8 (0..255) or float in [0, 1]; floats are quantised
like 8-bit files (round(x * 255)), and greyscale is replicated to RGB where a
network wants 3 channels. See ``evals.features`` for the whole protocol.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["images_to_uint8"]

# Float images may overshoot [0, 1] by this much (round-off in a generator's last layer).
_RANGE_TOLERANCE = 1e-3


def images_to_uint8(images, channels: int | None = 3) -> torch.Tensor:
    """Apply the input protocol: -> uint8 (N, channels, H, W) on CPU.

    Args:
        images: uint8 or float in [0, 1], (N, C, H, W) with C in {1, 3}.
        channels: 3 replicates greyscale to RGB; None keeps C.
    """
    if not isinstance(images, torch.Tensor):
        images = torch.from_numpy(np.asarray(images))
    images = images.detach().cpu()
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C 1 or 3; got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        if not images.is_floating_point():
            raise ValueError(f"images must be uint8 or float in [0, 1]; got dtype {images.dtype}")
        low, high = (float(images.min()), float(images.max())) if images.numel() else (0.0, 0.0)
        if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
            raise ValueError(
                f"float images must be in [0, 1]; got values in [{low:.4g}, {high:.4g}] "
                "(map tanh outputs with (x + 1) / 2)"
            )
        images = images.to(torch.float32).mul(255).round_().clamp_(0, 255).to(torch.uint8)
    if channels == 3 and images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images
