"""`zerosum sample MODEL_URI`: draw from a logged generator into a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from zerosum.cli.common import positive_int


def cmd_sample(args: argparse.Namespace) -> int:
    from zerosum.serving import sample_to_png

    path = sample_to_png(args.model_uri, args.num, args.output, label=args.label, seed=args.seed,
                         code=args.code, sweep=args.sweep)
    print(f"wrote {path}")
    return 0


def register_commands(commands) -> None:
    sample = commands.add_parser("sample", help="draw samples from a logged generator into a PNG")
    sample.add_argument("model_uri", help="e.g. models:/mnist-dcgan@candidate or runs:/<id>/generator")
    sample.add_argument("-n", "--num", type=positive_int, default=64, help="number of samples (default 64)")
    sample.add_argument("--label", type=int, default=None, help="class to draw (conditional models)")
    sample.add_argument("--code", type=int, default=None, help="InfoGAN: draw this category of the categorical code")
    sample.add_argument("--sweep", type=int, default=None, metavar="J",
                        help="InfoGAN: step continuous code J from -1 to 1 across the samples")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("-o", "--output", type=Path, default=Path("samples.png"))
    sample.set_defaults(handler=cmd_sample)
