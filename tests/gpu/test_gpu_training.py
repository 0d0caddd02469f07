"""GPU checks (marked `gpu`; `make test` deselects them, `make gpu-test` runs them)."""

import pytest
import torch

from zerosum.config import load_job
from zerosum.methods import PhaseContext
from zerosum.methods.gan import GanMethod
from zerosum.train.build import build_models, noise_source_for
from zerosum.train.steps import run_phase
from zerosum_testing import JOBS

pytestmark = pytest.mark.gpu


@pytest.fixture
def cuda():
    if not torch.cuda.is_available():
        raise RuntimeError("the gpu tests need a CUDA device; run them with `make gpu-test` on a GPU machine")
    return torch.device("cuda")


def test_bf16_autocast_steps_train_on_cuda(cuda):
    torch.manual_seed(0)
    spec = load_job(JOBS / "mnist-dcgan.yaml", ["model.g.z_dim=64", "loss.name=nonsaturating"], check_paths=False)
    g, d = (m.to(cuda) for m in build_models(spec, (1, 28, 28), 10))
    players = {"g": g, "d": d}
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    ctx = PhaseContext(spec, noise_source_for(spec, 10), torch.Generator().manual_seed(1),
                       torch.Generator().manual_seed(2), cuda, lambda: torch.autocast("cuda", dtype=torch.bfloat16))
    method = GanMethod(spec)
    batch = {"x": torch.rand(64, 1, 28, 28, device=cuda) * 2 - 1, "y": None}
    first = run_phase(method.critic_loss, players, ("d",), opt_d, batch, ctx, "loss/d")
    for _ in range(20):
        d_metrics = run_phase(method.critic_loss, players, ("d",), opt_d, batch, ctx, "loss/d")
        g_metrics = run_phase(method.generator_loss, players, ("g",), opt_g, None, ctx, "loss/g")
    assert all(torch.isfinite(v) for v in {**d_metrics, **g_metrics}.values())
    assert float(d_metrics["loss/d"]) != float(first["loss/d"])
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
