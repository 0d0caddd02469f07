"""GPU checks (marked `gpu`; `make test` deselects them, `make gpu-test` runs them)."""

import pytest
import torch

from zerosum.models import build_discriminator, build_generator
from zerosum.train.steps import StepConfig, d_step, g_step

pytestmark = pytest.mark.gpu


@pytest.fixture
def cuda():
    if not torch.cuda.is_available():
        raise RuntimeError("the gpu tests need a CUDA device; run them with `make gpu-test` on a GPU machine")
    return torch.device("cuda")


def test_bf16_autocast_steps_train_on_cuda(cuda):
    torch.manual_seed(0)
    g = build_generator("dcgan", sample_shape=(1, 28, 28), z_dim=64).to(cuda)
    d = build_discriminator("dcgan", sample_shape=(1, 28, 28)).to(cuda)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    cfg = StepConfig("nonsaturating", autocast=lambda: torch.autocast("cuda", dtype=torch.bfloat16))
    reals = torch.rand(64, 1, 28, 28, device=cuda) * 2 - 1
    first = d_step(g, d, opt_d, reals, None, torch.randn(64, 64, device=cuda), None, cfg)
    for _ in range(20):
        d_metrics = d_step(g, d, opt_d, reals, None, torch.randn(64, 64, device=cuda), None, cfg)
        g_metrics = g_step(g, d, opt_g, torch.randn(64, 64, device=cuda), None, cfg)
    assert all(torch.isfinite(torch.tensor(v)) for v in {**d_metrics, **g_metrics}.values())
    assert d_metrics["loss/d"] != first["loss/d"]
    assert all(p.dtype == torch.float32 for p in g.parameters()), "autocast must keep fp32 master weights"


def test_inception_features_on_gpu_match_cpu(cuda, shared_data, tmp_path, monkeypatch):
    from evals.features import build_feature_extractor
    from zerosum.config import DataSpec
    from zerosum.data import load_dataset

    monkeypatch.setenv("ZEROSUM_CACHE", str(tmp_path))
    images = load_dataset(DataSpec(name="mnist", root=shared_data / "mnist", scale="unit", limit=16)).samples
    cpu = build_feature_extractor("inception", device="cpu")(images)
    gpu = build_feature_extractor("inception", device="cuda")(images)
    # float32 Inception, TF32 off: ~40 sequential convolutions of up to 3456 terms on features <= 3.5
    # give ~2e-5 of scale per summation order (CPU variants agree to 1.1e-5); cuDNN may sum in yet
    # another order. 2e-4 leaves room and still fails TF32, which moves features by ~1e-3.
    torch.testing.assert_close(gpu, cpu, rtol=0, atol=2e-4)


def test_ray_train_run_on_gpu_with_nccl_and_bf16(cuda, workdir):
    from zerosum_testing import JOBS, run_cli

    out = run_cli("run", str(JOBS / "digits-dcgan.yaml"), "--set", "scaling.use_gpu=true",
                  "--set", "scaling.num_workers=1", "--set", "scaling.precision=bf16",
                  "--set", "schedule.max_rounds=50", "--set", "eval.every_rounds=25", cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "models:/digits-dcgan@candidate" in out.stdout
