"""`zerosum translate MODEL_URI --input DIR_OR_SPEC`: a logged translator's outputs beside its inputs."""

from __future__ import annotations

import argparse
from pathlib import Path

from zerosum.cli.common import positive_int


def cmd_translate(args: argparse.Namespace) -> int:
    from zerosum.serving import translate_to_png

    path = translate_to_png(args.model_uri, args.input, args.output, n=args.num)
    print(f"wrote {path}")
    return 0


def register_commands(commands) -> None:
    translate = commands.add_parser("translate", help="translate images with a logged pix2pix or CycleGAN model")
    translate.add_argument("model_uri", help="e.g. models:/mnist-superres@candidate or runs:/<id>/generator")
    translate.add_argument("--input", type=Path, required=True,
                           help="a folder of images of the model's input size, or a job spec whose task "
                                "gives held-out inputs (and targets)")
    translate.add_argument("-n", "--num", type=positive_int, default=64, help="images to translate (default 64)")
    translate.add_argument("-o", "--output", type=Path, default=Path("translated.png"))
    translate.set_defaults(handler=cmd_translate)
