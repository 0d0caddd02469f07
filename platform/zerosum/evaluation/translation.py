"""Judging a translator: held-out inputs translated, scored per image, and its task's baseline.

A translating method's G is sampled on held-out inputs (the test split of data.task), not
on z. Every rank takes an equal share of one seeded choice of them, translates it and
scores each output against its target (PSNR, SSIM: paired tasks) and its label (the
domain classifier's accuracy); the per-image rows are gathered and averaged on rank 0.
The task's baseline outputs (bicubic, mean fill, the untranslated input) go through the
same path once per run, under `baseline/` keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from evals.translation import accuracy_per_image, psnr_per_image, ssim_per_image
from zerosum.config import JobSpec
from zerosum.data import load_dataset, to_unit_images
from zerosum.train.steps import eval_mode

# The same seed as the real side (evaluation.reference): a paired task's targets are a
# subset of the reals the outputs' FID is measured against.
HELD_OUT_SEED = 0


@dataclass(frozen=True)
class HeldOut:
    """One rank's share of the held-out translation set, n items, in the data's scale.

    inputs (n, *input_shape); targets (n, *sample_shape) or None (unpaired); labels int64 (n,),
    the inputs' classes; baseline (n, *sample_shape), the task's output without learning."""

    inputs: torch.Tensor
    targets: torch.Tensor | None
    labels: torch.Tensor
    baseline: torch.Tensor


def held_out_share(spec: JobSpec, rank: int, world_size: int) -> HeldOut:
    """This rank's equal share of min(eval.num_samples, held-out inputs), rounded down to a
    multiple of world_size so that every rank gathers the same count."""
    test = load_dataset(spec.data, "test", seed=HELD_OUT_SEED)
    count = min(spec.eval.num_samples, len(test.inputs))
    share = count // world_size
    order = torch.randperm(len(test.inputs), generator=torch.Generator().manual_seed(HELD_OUT_SEED))
    mine = order[rank * share:(rank + 1) * share]
    return HeldOut(test.inputs[mine], test.samples[mine] if test.paired else None, test.input_labels[mine],
                   test.baseline[mine])


@torch.no_grad()
def translate(model: nn.Module, inputs: torch.Tensor, device: torch.device, batch_size: int = 500) -> torch.Tensor:
    """model(inputs) in eval mode, batched -> CPU float32 (n, *output_shape)."""
    with eval_mode(model):
        outputs = [model(inputs[start:start + batch_size].to(device)).float().cpu()
                   for start in range(0, len(inputs), batch_size)]
    return torch.cat(outputs)


def per_image_scores(outputs: torch.Tensor, held_out: HeldOut, probs: torch.Tensor | None, scale: str,
                     wanted: set[str]) -> dict[str, torch.Tensor]:
    """{"psnr", "ssim", "accuracy"}: float64 (n, 1) rows, those asked for and computable."""
    rows: dict[str, torch.Tensor] = {}
    if held_out.targets is not None:
        unit_out, unit_target = to_unit_images(outputs, scale), to_unit_images(held_out.targets, scale)
        if "psnr" in wanted:
            rows["psnr"] = psnr_per_image(unit_out, unit_target)
        if "ssim" in wanted:
            rows["ssim"] = ssim_per_image(unit_out, unit_target)
    if "accuracy" in wanted and probs is not None:
        rows["accuracy"] = accuracy_per_image(probs, held_out.labels)
    return {key: value.reshape(-1, 1) for key, value in rows.items()}
