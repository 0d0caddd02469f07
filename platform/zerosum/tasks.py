"""Image-to-image tasks derived on the fly from a dataset, so they need no new files.

    superres  input: the image area-downsampled by data.factor (7x7 for MNIST at factor 4)
    complete  input: the image with a data.mask_size square set to mid-grey (face completion)
    unpaired  input: an image of another domain (data.source), resized to this data's side

Paired tasks keep each image's label beside its input, so the domain classifier can
judge the outputs. Each task has a baseline: what a method must beat without learning
anything about the images (bicubic upsampling, the masked square filled with the
training mean, the untranslated input).

Pure torch: the functions here make a task's tensors; data.derive_task applies them to a
dataset as data.load_dataset reads it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The value a masked pixel takes, per scale: mid-grey, as Context Encoders fill their holes.
MASK_FILL = {"symmetric": 0.0, "unit": 0.5}
SCALE_RANGE = {"symmetric": (-1.0, 1.0), "unit": (0.0, 1.0)}
# Seeds of the fixed masks per split, apart from every training seed.
MASK_SEEDS = {"train": 7_001, "test": 7_002}


def area_downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """float (N, C, H, W) -> (N, C, H/f, W/f): each output pixel the mean of its f x f block."""
    return F.avg_pool2d(images, factor)


def lift(inputs: torch.Tensor, side: int, scale: str) -> torch.Tensor:
    """Bicubic upsampling of (N, C, h, w) to (N, C, side, side), clamped to the scale's range
    (bicubic overshoots at edges); the identity when the inputs already have that side."""
    if inputs.shape[-1] == side:
        return inputs
    low, high = SCALE_RANGE[scale]
    return F.interpolate(inputs, size=(side, side), mode="bicubic", align_corners=False).clamp(low, high)


def square_masks(n: int, side: int, mask_size: int, generator: torch.Generator) -> torch.Tensor:
    """bool (n, 1, side, side): one mask_size x mask_size square per image, wholly inside it,
    its corner uniform over the side - mask_size + 1 places on each axis."""
    corners = torch.randint(side - mask_size + 1, (n, 2), generator=generator)
    rows = torch.arange(side).view(1, side, 1)
    cols = torch.arange(side).view(1, 1, side)
    top, left = corners[:, 0].view(n, 1, 1), corners[:, 1].view(n, 1, 1)
    inside = (rows >= top) & (rows < top + mask_size) & (cols >= left) & (cols < left + mask_size)
    return inside.unsqueeze(1)


def resize_to(images: torch.Tensor, side: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, side, side), bilinear: another domain brought to this data's side."""
    if images.shape[-1] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
