"""The content-keyed feature cache a benchmark's real row goes through: the same samples
through the same weights hit, anything else misses, and a hit gives the features back."""

from types import SimpleNamespace

import torch

from zerosum.evaluation.reference import cached_extract

# Only the job's eval.featurizer_path is read, and only for an extractor without weights_path.
SPEC = SimpleNamespace(eval=SimpleNamespace(featurizer_path=None))


class CountingExtractor:
    """Features = per-sample sums, with a class-probability column; counts its calls."""

    name = "counting"

    def __init__(self, weights_path):
        self.weights_path, self.calls = weights_path, 0

    def features_and_probs(self, images):
        self.calls += 1
        flat = images.reshape(len(images), -1).double()
        return flat.sum(dim=1, keepdim=True), torch.ones(len(images), 1, dtype=torch.float64)


def test_the_same_samples_hit_and_others_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSUM_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"one")
    extractor = CountingExtractor(str(weights))
    samples = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    first, probs = cached_extract(extractor, SPEC, samples, "unit", is_image=True)
    again, probs_again = cached_extract(extractor, SPEC, samples.clone(), "unit", is_image=True)
    assert extractor.calls == 1
    # The cache holds float64 as computed: bit-for-bit the same features and probs.
    assert torch.equal(first, again) and torch.equal(probs, probs_again)

    changed = samples.clone()
    changed[0, 0, 0, 0] += 0.5
    cached_extract(extractor, SPEC, changed, "unit", is_image=True)
    assert extractor.calls == 2
    cached_extract(extractor, SPEC, samples, "symmetric", is_image=True)  # same tensor, another scale
    assert extractor.calls == 3
    weights.write_bytes(b"retrained")  # the same path, other weights
    cached_extract(extractor, SPEC, samples, "unit", is_image=True)
    assert extractor.calls == 4
