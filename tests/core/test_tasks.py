"""The derived image-to-image tasks, checked against their definitions: superres inputs are
the exact area-downsampling of the targets, a completion mask is one square inside the
image with every other pixel the target's, an unpaired domain is drawn apart."""

from __future__ import annotations

import pytest
import torch

from zerosum.config import ConfigError, DataSpec, validate_job
from zerosum.data import ShardedBatches, load_dataset
from zerosum.tasks import MASK_FILL
from zerosum_testing import SHARED_DATA

MNIST = SHARED_DATA / "mnist"


def mnist(**fields) -> DataSpec:
    return DataSpec(name="mnist", root=MNIST, limit=500, **fields)


@pytest.mark.parametrize("factor", [2, 4, 7])
def test_superres_inputs_are_block_means_of_their_targets(shared_data, factor):
    data = load_dataset(mnist(task="superres", factor=factor), "train")
    side = 28 // factor
    # Block means written out: (N, 1, side, f, side, f) averaged over each f x f block.
    blocks = data.samples.reshape(len(data), 1, side, factor, side, factor).mean(dim=(3, 5))
    assert data.inputs.shape == (500, 1, side, side)
    # avg_pool2d and this mean sum the same float32 pixels in another order: |error| of a
    # mean of f^2 values in [-1, 1] is a few ulps of 1, so 1e-6 absolute.
    torch.testing.assert_close(data.inputs, blocks, rtol=0, atol=1e-6)
    assert torch.equal(data.input_labels, data.labels)


def test_complete_masks_one_square_inside_the_image_and_keeps_every_other_pixel(shared_data):
    data = load_dataset(mnist(task="complete", mask_size=12), "test")
    # No MNIST pixel is mid-grey in the symmetric scale (k/255 * 2 - 1 = 0 needs k = 127.5),
    # so the masked pixels are exactly those equal to the fill value.
    masked = data.inputs == MASK_FILL["symmetric"]
    for image in range(200):
        rows, cols = masked[image, 0].nonzero(as_tuple=True)
        assert len(rows) == 144
        assert rows.max() - rows.min() == 11 and cols.max() - cols.min() == 11  # one 12x12 square
        assert rows.min() >= 0 and rows.max() <= 27 and cols.min() >= 0 and cols.max() <= 27
    assert torch.equal(data.inputs[~masked], data.samples[~masked])
    # The baseline fills the square with the mean of the training images (data.limit of them)
    # and keeps the rest.
    train_mean = load_dataset(mnist(), "train").samples.mean(0)
    expected = torch.where(masked, train_mean.expand_as(data.samples), data.samples)
    assert torch.equal(data.baseline, expected)


def test_superres_baseline_is_the_bicubic_lift(shared_data):
    import torch.nn.functional as F

    data = load_dataset(mnist(task="superres", factor=4), "test")
    expected = F.interpolate(data.inputs, size=(28, 28), mode="bicubic", align_corners=False).clamp(-1, 1)
    assert torch.equal(data.baseline, expected)


def test_unpaired_domains_are_drawn_in_orders_of_their_own(shared_data):
    data = load_dataset(mnist(task="unpaired", source=DataSpec(name="digits")), "train")
    assert data.inputs.shape == (1437, 1, 28, 28) and not data.paired
    batcher = ShardedBatches(data, batch_size=100, rank=0, world_size=1, seed=0)
    batches = iter(batcher)
    first = [next(batches) for _ in range(5)]
    # Every source image once per source epoch (14 batches of 100 of 1437): no repeats here.
    seen = torch.cat([b["c_y"] for b in first])
    assert len(seen) == 500
    rows = torch.cat([b["c"] for b in first]).flatten(1)
    assert len(torch.unique(rows, dim=0)) == 500
    # The digits come in their own shuffled order (seed + 1), not the MNIST samples' (seed).
    from zerosum.data import shard_order

    assert torch.equal(seen, data.input_labels[shard_order(1437, 0, 1, 1, 0)[:500]])
    assert torch.equal(torch.cat([b["y"] for b in first]), data.labels[shard_order(500, 0, 1, 0, 0)])


def test_batches_continue_mid_epoch_from_start_batch(shared_data):
    data = load_dataset(mnist(task="unpaired", source=DataSpec(name="digits", limit=300)), "train")
    whole = iter(ShardedBatches(data, batch_size=64, rank=0, world_size=1, seed=0))
    drawn = [next(whole) for _ in range(12)]  # 7 batches of samples an epoch, 4 of digits
    later = ShardedBatches(data, batch_size=64, rank=0, world_size=1, seed=0)
    later.start_batch = 9
    for expected, batch in zip(drawn[9:], iter(later)):
        assert torch.equal(expected["x"], batch["x"]) and torch.equal(expected["c"], batch["c"])


def job(**data) -> dict:
    return {"name": "t", "method": "pix2pix", "schedule": {"max_rounds": 2},
            "data": {"name": "mnist", "root": str(MNIST), **data}}


def test_a_superres_factor_that_does_not_divide_the_side_names_the_field(shared_data):
    with pytest.raises(ConfigError, match=r"data\.factor: 3 does not divide the image side 28.*allowed: 2, 4, 7"):
        validate_job(job(task="superres", factor=3))


def test_cyclegan_domains_with_different_channels_name_the_field(shared_data, tmp_path):
    raw = job(task="unpaired", source={"name": "folder", "root": str(tmp_path), "image_size": 28, "channels": 3})
    with pytest.raises(ConfigError, match=r"data\.source: domain X \(folder\) has 3 channel\(s\) and domain Y "
                                          r"\(mnist\) has 1"):
        validate_job({**raw, "method": "cyclegan"})


@pytest.mark.parametrize("raw, field", [
    ({"method": "staged", "data": {"task": "superres", "factor": 4}},
     "data.factor: method staged's first stage is 7x7 at data.factor 4, and arch dcgan builds sides "
     "8, 14, 16, 28, 32, 64; allowed factors: 2"),
    ({"method": "pix2pix", "data": {"task": "superres"}, "loss": {"r1_gamma": 1.0}}, "loss.r1_gamma"),
    ({"method": "gan", "model": {"translator": {"arch": "resnet"}}}, "model.translator / model.patch"),
    ({"method": "pix2pix", "data": {"name": "digits", "root": None, "task": "superres", "factor": 2},
      "eval": {"metrics": ["ssim"]}}, "eval.metrics: ssim's 11x11 window needs images of side 11"),
    ({"method": "pix2pix", "data": {"task": "superres"}, "eval": {"num_samples": 1},
      "scaling": {"num_workers": 2}}, "eval.num_samples: 1 held-out inputs cannot be shared by 2 workers"),
    ({"method": "gan", "data": {"task": "superres"}}, "data.task: method gan trains on generate"),
    ({"method": "pix2pix", "data": {"task": "unpaired", "source": {"name": "digits"}}},
     "data.task: method pix2pix trains on superres or complete"),
    ({"method": "pix2pix", "data": {"task": "superres"}, "model": {"g": {"z_dim": 8}}}, "model.g / model.d"),
    ({"method": "pix2pix", "data": {"task": "superres"}, "loss": {"name": "wgan-gp"}}, "loss.name: method pix2pix"),
    ({"method": "gan", "loss": {"l1_weight": 5}}, "loss.l1_weight"),
    ({"method": "pix2pix", "data": {"task": "superres"}, "loss": {"cycle_weight": 5}}, "loss.cycle_weight"),
    ({"method": "gan", "eval": {"metrics": ["psnr"]}}, "eval.metrics: psnr and ssim"),
    ({"method": "gan", "data": {"source": {"name": "digits"}}}, "data.source: only data.task unpaired"),
])
def test_fields_that_cannot_go_with_the_method_are_refused_by_name(shared_data, raw, field):
    spec = job()
    spec["method"] = raw["method"]
    spec["data"] |= raw.get("data", {})
    for key in ("model", "loss", "eval", "scaling"):
        if key in raw:
            spec[key] = raw[key]
    with pytest.raises(ConfigError, match=field.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        validate_job(spec)
