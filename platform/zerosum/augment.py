"""DiffAugment (Zhao et al. 2020): differentiable augmentations for both D inputs (torch only).

D sees augment(x) for reals and augment(G(z)) for fakes, in D's step and in G's step alike;
every operation is differentiable in the image, so G trains through the augmentation.
Policies and constants follow the authors' DiffAugment_pytorch.py
(mit-han-lab/data-efficient-gans):

    color        brightness x + (u - 0.5); saturation (x - m_c) 2u + m_c with m_c the mean over
                 channels; contrast (x - m) (u + 0.5) + m with m the mean over (C, H, W);
                 one u ~ U[0, 1) per sample and operation, in that order.
    translation  shift by integers in [-H // 8, H // 8] x [-W // 8, W // 8] per sample,
                 zero padding (ratio 1/8).
    cutout       zero an (H // 2) x (W // 2) square (ratio 1/2) whose centre is uniform over
                 the image per sample; it is clipped where it overhangs the border.

Unlike the reference, which draws from the global RNG, every draw comes from the caller's
torch.Generator, so a rank-seeded generator makes a run reproducible. The draws are made
on the generator's device and moved to the images' device. Images: float (N, C, H, W),
in [-1, 1] as the reference assumes (the colour offsets are in those units).

Imports torch only (see docs/architecture.md, "Boundaries").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One U[0, 1) per sample, shaped (N, 1, 1, 1) in x's dtype and device."""
    u = torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=generator.device, dtype=x.dtype)
    return u.to(x.device)


def _randint(low: int, high: int, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """n integers in [low, high), int64 on `device`."""
    return torch.randint(low, high, (n,), generator=generator, device=generator.device).to(device)


def rand_brightness(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x + (_uniform(x, generator) - 0.5)


def rand_saturation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(x, generator) * 2) + mean


def rand_contrast(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, generator) + 0.5) + mean


def rand_translation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """out[i, :, r, c] = x[i, :, r + dy_i, c + dx_i] where inside the image, else 0."""
    n, _, h, w = x.shape
    shift_y, shift_x = h // 8, w // 8
    dy = _randint(-shift_y, shift_y + 1, n, generator, x.device).view(n, 1, 1)
    dx = _randint(-shift_x, shift_x + 1, n, generator, x.device).view(n, 1, 1)
    # Index into a one-pixel zero border: every source outside the image lands on it (the
    # reference's trick), so the result is a gather, differentiable in x.
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    padded = F.pad(x, (1, 1, 1, 1))
    # Advanced indices around a slice put the indexed dims first: (N, H, W, C).
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)


def rand_cutout(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Zero the rows [top, top + H // 2) x cols [left, left + W // 2), clipped to the image."""
    n, _, h, w = x.shape
    size_h, size_w = h // 2, w // 2
    # The reference's centre range: [0, H] for an even square, [0, H) for an odd one.
    centre_y = _randint(0, h + (1 - size_h % 2), n, generator, x.device).view(n, 1, 1)
    centre_x = _randint(0, w + (1 - size_w % 2), n, generator, x.device).view(n, 1, 1)
    top, left = centre_y - size_h // 2, centre_x - size_w // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    mask = (~inside).to(x.dtype)
    return x * mask.unsqueeze(1)


AUGMENTATIONS: dict[str, tuple[Augmentation, ...]] = {
    "color": (rand_brightness, rand_saturation, rand_contrast),
    "translation": (rand_translation,),
    "cutout": (rand_cutout,),
}


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation' -> ('color', 'translation'); '' -> (); ValueError on unknown names."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [p for p in names if p not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"DiffAugment policy {policy!r} has unknown parts {unknown}; allowed: {', '.join(AUGMENTATIONS)}"
        )
    return names


def diff_augment(x: torch.Tensor, policy: str, generator: torch.Generator) -> torch.Tensor:
    """Apply the comma-separated DiffAugment `policy` to images x: float (N, C, H, W) -> same shape.

    Random per sample, every draw from `generator` (in policy order), differentiable in x.
    An empty policy returns x itself. The reference's default is "color,translation,cutout".
    """
    names = parse_policy(policy)
    if x.dim() != 4:
        raise ValueError(f"diff_augment needs images (N, C, H, W); got shape {tuple(x.shape)}")
    for name in names:
        for augmentation in AUGMENTATIONS[name]:
            x = augmentation(x, generator)
    return x.contiguous() if names else x
