"""Turning generator outputs into pictures: image grids and 2-D scatter plots."""

from __future__ import annotations

import math

import numpy as np
import torch

from zerosum.catalog import kind_of_shape
from zerosum.data import to_unit_images

MIN_TILE_PX = 32


def image_grid(images_unit: torch.Tensor) -> np.ndarray:
    """images_unit: float (N, C, H, W) in [0, 1] -> uint8 (H', W', 3) grid, ~square.

    Tiles smaller than 32 px (the 8x8 digits) are enlarged by an integer factor,
    nearest-neighbour, so that people can see them.
    """
    rows = max(1, int(math.sqrt(len(images_unit))))
    images = images_unit.float().cpu().clamp(0, 1)
    factor = max(1, MIN_TILE_PX // images.shape[-1])
    if factor > 1:
        images = images.repeat_interleave(factor, dim=-1).repeat_interleave(factor, dim=-2)
    # torchvision is imported here, not at the top: importing it costs every trial process
    # and worker about 1.6 s on 2 cores, and runs on points never draw a grid.
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=rows, padding=2, pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display on workers, drivers or CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_to_rgb(figure) -> np.ndarray:
    """A drawn matplotlib figure as uint8 (H, W, 3), the figure closed."""
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    pyplot().close(figure)
    return image


def scatter_image(points: torch.Tensor, reference: torch.Tensor | None = None, limit: float = 5.0) -> np.ndarray:
    """points: float (N, 2) fakes (and reference reals) -> uint8 (H, W, 3) scatter plot."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        axis.scatter(*reference.cpu().T.numpy(), s=2, c="tab:gray", alpha=0.4, label="real")
    axis.scatter(*points.detach().float().cpu().T.numpy(), s=2, c="tab:red", alpha=0.6, label="fake")
    axis.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal")
    axis.legend(loc="upper right", markerscale=4)
    return figure_to_rgb(figure)


def samples_to_image(samples: torch.Tensor, scale: str, reference: torch.Tensor | None = None) -> np.ndarray:
    """Model outputs in the data's scale -> a picture: a grid for images, a scatter for 2-D points."""
    if kind_of_shape(tuple(samples.shape[1:])) == "points":
        return scatter_image(samples, reference)
    return image_grid(to_unit_images(samples, scale))


def titled_row(pictures: list[np.ndarray] | tuple[np.ndarray, ...], titles: tuple[str, ...]) -> np.ndarray:
    """Pictures (uint8 (H, W, 3) each, e.g. grids) next to each other, each titled, as one
    uint8 (H', W', 3) picture."""
    plt = pyplot()
    height_px = max(picture.shape[0] for picture in pictures)
    dpi, count = 100, len(pictures)
    figure, axes = plt.subplots(1, count, figsize=(count * height_px / dpi + 0.4, height_px / dpi + 0.5), dpi=dpi)
    for axis, image, title in zip(axes, pictures, titles):
        axis.imshow(image, interpolation="nearest")
        axis.set_title(title)
        axis.axis("off")
    figure.tight_layout()
    return figure_to_rgb(figure)


def side_by_side(real: np.ndarray, fake: np.ndarray, titles: tuple[str, str] = ("real", "generated")) -> np.ndarray:
    """Reals and fakes (grids) side by side, titled: the comparison a run ends with."""
    return titled_row((real, fake), titles)


def save_png(image: np.ndarray, path) -> None:
    from PIL import Image

    Image.fromarray(image).save(path)
