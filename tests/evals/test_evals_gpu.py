"""CUDA paths of evals agree with the CPU ones (marked gpu: `make test` deselects them, `make gpu-test` runs them).

Ran on an NVIDIA H200 (torch 2.11) during development. The Inception check uses
random weights in torch-fidelity's layout, because the TF-FID weights are not
shipped to GPU machines; it tests the code path and its precision (TF32 off).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evals import mmd
from evals.stats import FeatureStats

pytestmark = pytest.mark.gpu


def test_flat_stats_on_gpu_rebuild_on_cpu():
    features = np.random.default_rng(0).standard_normal((300, 32)) + 1
    flat = sum(FeatureStats.from_features(part).to_tensor("cuda") for part in np.array_split(features, 3))
    assert flat.is_cuda and flat.dtype == torch.float64
    # float64 (the GPU only adds three flat tensors, exactly as the CPU would): outer-sum cov vs
    # np.cov's centred one, <= 300 eps64 * E[x_i x_j] (~2) = 7e-14 apart; 1e-12 leaves room.
    np.testing.assert_allclose(FeatureStats.from_tensor(flat, 32).cov(), np.cov(features, rowvar=False),
                               rtol=1e-10, atol=1e-12)


def test_mmd_test_and_kid_on_gpu_equal_cpu():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((500, 256)) * 0.3 + 0.2)
    y = torch.from_numpy(rng.standard_normal((500, 256)) * 0.3 + 0.21)
    cpu = mmd.mmd_permutation_test(x, y, num_permutations=500, seed=0)
    gpu = mmd.mmd_permutation_test(x.cuda(), y.cuda(), num_permutations=500, seed=0)
    # float64. MMD^2 = 2.7e-4 is a difference of Gaussian-kernel means (k <= 1), so round-off is
    # absolute: cuBLAS vs CPU 256-term distances (~1e-13 in k) and reductions over <= 1000 terms
    # (<= 1000 eps64 per mean), weights 1 + 1 + 2: ~1.2e-12 worst case (4e-9 relative).
    assert gpu.mmd2 == pytest.approx(cpu.mmd2, abs=1e-11) and gpu.pvalue == cpu.pvalue
    for strategy in ("full", "subsets"):
        expected = mmd.kid(x, y, num_subsets=10, subset_size=200, strategy=strategy)
        got = mmd.kid(x.cuda(), y.cuda(), num_subsets=10, subset_size=200, strategy=strategy)
        # float64, KID = 2.8e-4 from cubic-kernel means (k <= 1.63): 256-term dot products (~3e-14
        # in k) and <= 1000-term sums, weights 4: <= 4 * 1000 * 1.1e-16 * 1.63 ~ 8e-13 absolute.
        assert got.mean == pytest.approx(expected.mean, abs=1e-11)


def test_inception_on_gpu_equals_torch_fidelity_on_cpu(tmp_path):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from evals.features import InceptionExtractor, images_to_uint8
    from evals.inception import _torch_fidelity_layout

    torch.manual_seed(0)
    layout = _torch_fidelity_layout()
    for module in layout.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    state = layout.state_dict()
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    torch.save(state, tmp_path / "random.pth")
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    reference = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                            feature_extractor_weights_path=str(tmp_path / "random.pth"))
    with torch.no_grad():
        (expected,) = reference(images_to_uint8(images))
    features = InceptionExtractor(tmp_path / "random.pth", device="cuda", batch_size=4)(images)
    # float32 through ~40 sequential convolutions of up to 3456 terms on features <= 1.6 (measured):
    # ~sqrt(40) * sqrt(3456) * 6e-8 = 2e-5 of scale, ~4e-5; 1e-4 still fails TF32's ~1e-3.
    torch.testing.assert_close(features, expected.double(), atol=1e-4, rtol=0)
