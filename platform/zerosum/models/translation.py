"""Image-to-image players: a U-Net or residual translator, and a PatchGAN critic of pairs.

    T = build_translator("unet", input_shape=(1, 7, 7), output_shape=(1, 28, 28))
    y = T(x)              # x: float (N, 1, 7, 7) -> float (N, 1, 28, 28)
    D = PairDiscriminator(condition_channels=1, image_channels=1, side=28)
    logits = D(T.condition(x), y)   # -> float (N, 49): one logit per patch, no sigmoid

A translator first lifts its input to the output side (bicubic, for super-resolution; the
identity for inputs of that side already), then runs its net at that side: so the critic
can stack the lifted input and an output along channels, as pix2pix's D does. The lift
alone is the task's bicubic baseline.

Imports torch only (see docs/architecture.md, "Boundaries").
"""

from __future__ import annotations

import torch
from torch import nn

from zerosum.catalog import TRANSLATOR_ARCHS
from zerosum.models.layers import apply_spectral_norm, check_batch, check_choice, init_dcgan_weights, make_output
from zerosum.tasks import lift

# A U-Net halves its side while it stays even and at least this, at most MAX_UNET_DEPTH
# times: 28 -> 14 -> 7, 32 -> 16 -> 8 -> 4.
MIN_UNET_SIDE = 4
MAX_UNET_DEPTH = 3


def unet_depth(side: int) -> int:
    """Halvings of a U-Net at this side (0 when the side is odd or below 2 * MIN_UNET_SIDE)."""
    depth = 0
    while depth < MAX_UNET_DEPTH and side % 2 == 0 and side // 2 >= MIN_UNET_SIDE:
        side, depth = side // 2, depth + 1
    return depth


def norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


def conv_block(c_in: int, c_out: int, kernel: int, stride: int, batch_norm: bool, act: nn.Module,
               transpose: bool = False) -> nn.Sequential:
    """conv (or transposed conv) + BN + act, padded so that stride 2 halves (or doubles) the side."""
    padding = 1 if kernel in (3, 4) else kernel // 2
    conv = (nn.ConvTranspose2d if transpose else nn.Conv2d)(c_in, c_out, kernel, stride, padding, bias=not batch_norm)
    return nn.Sequential(conv, norm(c_out, batch_norm), act)


class UNet(nn.Module):
    """x: float (N, C_in, S, S) -> float (N, C_out, S, S): encoder and decoder with skips.

    Widths base * 2**k at side S / 2**k; each decoder level reads its own output beside the
    encoder's of the same side (Ronneberger 2015; pix2pix's G). LeakyReLU(0.2) down, ReLU up.
    """

    def __init__(self, in_channels: int, out_channels: int, side: int, base_channels: int, batch_norm: bool,
                 output: str):
        super().__init__()
        depth = unet_depth(side)
        widths = [base_channels * 2**k for k in range(depth + 1)]
        self.stem = conv_block(in_channels, widths[0], 3, 1, False, nn.LeakyReLU(0.2))
        self.down = nn.ModuleList(conv_block(a, b, 4, 2, batch_norm, nn.LeakyReLU(0.2))
                                  for a, b in zip(widths[:-1], widths[1:]))
        self.bottleneck = conv_block(widths[-1], widths[-1], 3, 1, batch_norm, nn.ReLU())
        self.up = nn.ModuleList(conv_block(2 * b, a, 4, 2, batch_norm, nn.ReLU(), transpose=True)
                                for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Sequential(nn.Conv2d(2 * widths[0], out_channels, 3, 1, 1), make_output(output))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = self.bottleneck(skips[-1])
        for up, skip in zip(reversed(self.up), reversed(skips[1:])):
            h = up(torch.cat([h, skip], dim=1))
        return self.head(torch.cat([h, skips[0]], dim=1))


class ResidualBlock(nn.Module):
    """x + conv-BN-ReLU-conv-BN(x), at one width and side (He et al. 2016, as SRGAN uses)."""

    def __init__(self, channels: int, batch_norm: bool):
        super().__init__()
        self.body = nn.Sequential(conv_block(channels, channels, 3, 1, batch_norm, nn.ReLU()),
                                  nn.Conv2d(channels, channels, 3, 1, 1, bias=not batch_norm),
                                  norm(channels, batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetTranslator(nn.Module):
    """x: float (N, C_in, S, S) -> float (N, C_out, S, S): a stem, `blocks` residual blocks at
    full resolution, and an output conv (for enhancement, where the output is the input sharpened)."""

    def __init__(self, in_channels: int, out_channels: int, base_channels: int, blocks: int, batch_norm: bool,
                 output: str):
        super().__init__()
        self.net = nn.Sequential(
            conv_block(in_channels, base_channels, 3, 1, False, nn.ReLU()),
            *(ResidualBlock(base_channels, batch_norm) for _ in range(blocks)),
            nn.Conv2d(base_channels, out_channels, 3, 1, 1), make_output(output))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Translator(nn.Module):
    """inputs float (N, *input_shape) in the data's scale -> float (N, *output_shape).

    `condition(inputs)`: the inputs lifted to the output side (bicubic where smaller), what
    the net reads and what a pair critic sees beside an output."""

    def __init__(self, net: nn.Module, input_shape: tuple[int, int, int], output_shape: tuple[int, int, int],
                 scale: str):
        super().__init__()
        self.net, self.scale = net, scale
        self.input_shape, self.output_shape = tuple(input_shape), tuple(output_shape)

    def condition(self, inputs: torch.Tensor) -> torch.Tensor:
        check_batch("inputs", inputs, self.input_shape)
        return lift(inputs, self.output_shape[-1], self.scale)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(self.condition(inputs))


def build_translator(arch: str, *, input_shape: tuple[int, int, int], output_shape: tuple[int, int, int],
                     scale: str = "symmetric", base_channels: int = 32, blocks: int = 4, batch_norm: bool = True,
                     output: str = "tanh") -> Translator:
    """A Translator from input_shape (C, h, w) to output_shape (C', S, S), h dividing S."""
    check_choice("arch", arch, TRANSLATOR_ARCHS)
    (c_in, h, w), (c_out, side, side_w) = input_shape, output_shape
    if h != w or side != side_w or side % h:
        raise ValueError(f"translator: square inputs whose side divides the output's are needed; "
                         f"got {tuple(input_shape)} -> {tuple(output_shape)}")
    if arch == "unet":
        net = UNet(c_in, c_out, side, base_channels, batch_norm, output)
    else:
        net = ResNetTranslator(c_in, c_out, base_channels, blocks, batch_norm, output)
    translator = Translator(net, input_shape, output_shape, scale)
    init_dcgan_weights(translator)
    return translator


class PatchDiscriminator(nn.Module):
    """x: float (N, C, S, S) -> logits float (N, P), one per patch (PatchGAN, Isola et al. 2017).

    Two stride-2 convs (one where S is not divisible by 4) and a 3x3 conv to one channel: at
    28x28 a 7x7 map of logits, each seeing an 18x18 patch. No BN on the first conv."""

    def __init__(self, in_channels: int, side: int, base_channels: int, batch_norm: bool, spectral_norm: bool):
        super().__init__()
        downsamplings = 2 if side % 4 == 0 else 1
        widths = [in_channels] + [base_channels * 2**k for k in range(downsamplings)]
        layers = [conv_block(a, b, 4, 2, batch_norm and k > 0, nn.LeakyReLU(0.2))
                  for k, (a, b) in enumerate(zip(widths[:-1], widths[1:]))]
        self.net = nn.Sequential(*layers, nn.Conv2d(widths[-1], 1, 3, 1, 1), nn.Flatten(1))
        init_dcgan_weights(self)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PairDiscriminator(nn.Module):
    """(condition float (N, C_c, S, S), image float (N, C, S, S)) -> patch logits (N, P):
    pix2pix's conditional D, which judges an output together with the input it came from."""

    def __init__(self, condition_channels: int, image_channels: int, side: int, base_channels: int = 32,
                 batch_norm: bool = True, spectral_norm: bool = False):
        super().__init__()
        self.patch = PatchDiscriminator(condition_channels + image_channels, side, base_channels, batch_norm,
                                        spectral_norm)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.patch(torch.cat([condition, image.to(condition.dtype)], dim=1))
