"""Step throughput without Ray: zerosum's d_step/g_step against a plain PyTorch loop.

The same DCGAN (28x28, batch 64, 1 D + 1 G update), the same in-memory batches, in
one process, alternating the two sides so that clock and load drift hit both.
Isolates the cost of zerosum's step code (two D forwards, frozen D module, float
metrics) from Ray's; `train_throughput.py` measures the whole platform.

    python bench/step_throughput.py [--device cuda] [--bf16] [--rounds 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from zerosum.models import build_discriminator, build_generator  # noqa: E402
from zerosum.train.steps import StepConfig, d_step, g_step  # noqa: E402

BATCH, Z_DIM = 64, 100


def fresh_gan(device: torch.device):
    torch.manual_seed(0)
    g = build_generator("dcgan", sample_shape=(1, 28, 28), z_dim=Z_DIM).to(device)
    d = build_discriminator("dcgan", sample_shape=(1, 28, 28)).to(device)
    return (g, d, torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999)),
            torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999)))


def zerosum_round(g, d, opt_g, opt_d, reals, cfg):
    d_step(g, d, opt_d, reals, None, torch.randn(BATCH, Z_DIM, device=reals.device), None, cfg)
    g_step(g, d, opt_g, torch.randn(BATCH, Z_DIM, device=reals.device), None, cfg)


def plain_round(g, d, opt_g, opt_d, reals, autocast):
    """One D update (reals 1, detached fakes 0) and one G update through a frozen D."""
    batch, z_dim = len(reals), g.z_dim
    ones = torch.ones(batch, device=reals.device)
    with autocast():
        with torch.no_grad():
            fakes = g(torch.randn(batch, z_dim, device=reals.device))
        loss_d = (F.binary_cross_entropy_with_logits(d(reals).float(), ones)
                  + F.binary_cross_entropy_with_logits(d(fakes).float(), torch.zeros_like(ones)))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    d.requires_grad_(False)
    with autocast():
        loss_g = F.binary_cross_entropy_with_logits(d(g(torch.randn(batch, z_dim, device=reals.device))).float(), ones)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    d.requires_grad_(True)
    # Read the losses as zerosum's steps do, so both sides sync the device alike.
    loss_d.item(), loss_g.item()


def images_per_s(round_fn, device: torch.device, rounds: int) -> float:
    g, d, opt_g, opt_d = fresh_gan(device)
    reals = torch.rand(BATCH, 1, 28, 28, device=device) * 2 - 1
    for _ in range(20):
        round_fn(g, d, opt_g, opt_d, reals)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(rounds):
        round_fn(g, d, opt_g, opt_d, reals)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return rounds * BATCH / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    use_bf16 = args.bf16 and device.type == "cuda"
    autocast = partial(torch.autocast, "cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext
    cfg = StepConfig("nonsaturating", autocast=autocast)
    ours, plain = [], []
    for _ in range(args.repeats):
        plain.append(images_per_s(lambda *m: plain_round(*m, autocast), device, args.rounds))
        ours.append(images_per_s(lambda *m: zerosum_round(*m, cfg), device, args.rounds))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}  bf16: {use_bf16}  rounds: {args.rounds} x {args.repeats}  batch: {BATCH}")
    print(f"plain PyTorch steps:   {statistics.median(plain):10.1f} images/s  {[round(x) for x in plain]}")
    print(f"zerosum steps:         {statistics.median(ours):10.1f} images/s  {[round(x) for x in ours]}")
    print(f"ratio zerosum / plain: {statistics.median(ours) / statistics.median(plain):10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
