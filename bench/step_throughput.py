"""Step throughput without Ray: zerosum's method phases against a plain PyTorch loop.

The same DCGAN (28x28, batch 64, 1 D + 1 G update), the same in-memory batches, in
one process, alternating the two sides so that clock and load drift hit both.
Isolates the cost of zerosum's step code (method phases, two D forwards, frozen D module,
metrics kept on the device and read once per 10 rounds) from Ray's; the plain loop reads
its losses every round, as a hand-written loop that prints them does.
`train_throughput.py` measures the whole platform.

    python bench/step_throughput.py [--device cuda] [--bf16] [--rounds 300] [--repeats 3]
        [--compile {default,reduce-overhead,max-autotune}] [--channels-last]

--compile and --channels-last apply to zerosum's side only: the baseline stays the plain
eager loop, as the targets are stated (compiled >= 1.2x on CPU; bf16 + reduce-overhead
>= 2x on GPU). This needs no Ray or MLflow, so on a GPU machine without them it measures
the step and compile paths (issue: "measure the step and compile paths without Ray").
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

from zerosum.config import load_job  # noqa: E402
from zerosum.methods import PhaseContext  # noqa: E402
from zerosum.methods.gan import GanMethod  # noqa: E402
from zerosum.models import build_discriminator, build_generator  # noqa: E402
from zerosum.train.build import noise_source_for  # noqa: E402
from zerosum.train.steps import MetricWindow, run_phase  # noqa: E402

BATCH, Z_DIM, LOG_EVERY = 64, 100, 10


def fresh_gan(device: torch.device, compile_mode: str | None = None, channels_last: bool = False):
    """(g, d, opt_g, opt_d): the DCGAN pair, the same weights every call; with compile_mode,
    both players through torch.compile, as `scaling.compile` does (train/state.compiled, not
    imported here: it needs Ray)."""
    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    g = build_generator("dcgan", sample_shape=(1, 28, 28), z_dim=Z_DIM).to(device, memory_format=memory_format)
    d = build_discriminator("dcgan", sample_shape=(1, 28, 28)).to(device, memory_format=memory_format)
    opts = (torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999)),
            torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999)))
    if compile_mode is not None:
        mode = None if compile_mode == "default" else compile_mode
        g, d = torch.compile(g, mode=mode), torch.compile(d, mode=mode)
    return (g, d, *opts)


def zerosum_stepper(device: torch.device, autocast):
    """round(g, d, opt_g, opt_d, reals): one critic and one generator phase of method gan,
    metrics read from the device every LOG_EVERY rounds, as the loop does."""
    spec = load_job(Path(__file__).resolve().parents[1] / "jobs" / "mnist-dcgan.yaml",
                    [f"model.g.z_dim={Z_DIM}", f"schedule.batch_size={BATCH}", "loss.name=nonsaturating"],
                    check_paths=False)
    method, window = GanMethod(spec), MetricWindow()
    ctx = PhaseContext(spec, noise_source_for(spec, 10), torch.Generator().manual_seed(1),
                       torch.Generator().manual_seed(2), device, autocast)

    def round_fn(g, d, opt_g, opt_d, reals):
        players = {"g": g, "d": d}
        window.add(run_phase(method.critic_loss, players, ("d",), opt_d, {"x": reals, "y": None}, ctx, "loss/d"))
        window.add(run_phase(method.generator_loss, players, ("g",), opt_g, None, ctx, "loss/g"))
        if window.rounds >= 2 * LOG_EVERY:
            window.read()

    return round_fn


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


def images_per_s(round_fn, device: torch.device, rounds: int, compile_mode: str | None = None,
                 channels_last: bool = False) -> float:
    """Images per second over `rounds` timed rounds, after 20 untimed ones (compilation and
    CUDA graph capture happen there)."""
    g, d, opt_g, opt_d = fresh_gan(device, compile_mode, channels_last)
    reals = torch.rand(BATCH, 1, 28, 28, device=device) * 2 - 1
    if channels_last:
        reals = reals.contiguous(memory_format=torch.channels_last)
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
    parser.add_argument("--compile", choices=["default", "reduce-overhead", "max-autotune"],
                        help="torch.compile zerosum's players with this mode (the plain loop stays eager)")
    parser.add_argument("--channels-last", action="store_true", help="zerosum's players and batch in channels_last")
    args = parser.parse_args()
    device = torch.device(args.device)
    use_bf16 = args.bf16 and device.type == "cuda"
    autocast = partial(torch.autocast, "cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext
    zerosum_round = zerosum_stepper(device, autocast)
    ours, plain = [], []
    for _ in range(args.repeats):
        plain.append(images_per_s(lambda *m: plain_round(*m, autocast), device, args.rounds))
        ours.append(images_per_s(zerosum_round, device, args.rounds, args.compile, args.channels_last))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}  bf16: {use_bf16}  compile: {args.compile or 'no'}  channels_last: {args.channels_last}  "
          f"rounds: {args.rounds} x {args.repeats}  batch: {BATCH}  threads: {torch.get_num_threads()}")
    print(f"plain PyTorch steps:   {statistics.median(plain):10.1f} images/s  {[round(x) for x in plain]}")
    print(f"zerosum steps:         {statistics.median(ours):10.1f} images/s  {[round(x) for x in ours]}")
    print(f"ratio zerosum / plain: {statistics.median(ours) / statistics.median(plain):10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
