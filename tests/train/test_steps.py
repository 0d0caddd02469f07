"""D and G steps: exact counts per round, the right player moves, fakes detached."""

import torch

from zerosum.config import load_job
from zerosum.models import build_discriminator, build_generator
from zerosum.train.build import NoiseSource, apply_optimizer_spec, build_optimizer
from zerosum.train.steps import StepConfig, d_step, g_step, make_ema, run_round, update_ema
from zerosum_testing import JOBS


def tiny_gan(loss="nonsaturating", batch_norm=True):
    torch.manual_seed(0)
    g = build_generator("dcgan", sample_shape=(1, 8, 8), z_dim=8, base_channels=8, batch_norm=batch_norm)
    d = build_discriminator("dcgan", sample_shape=(1, 8, 8), base_channels=8, batch_norm=batch_norm)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-2)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-2)
    return g, d, opt_g, opt_d, StepConfig(loss)


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_d_step_moves_d_only_and_detaches_fakes():
    g, d, _, opt_d, cfg = tiny_gan()
    g_before, d_before = snapshot(g), snapshot(d)
    metrics = d_step(g, d, opt_d, torch.rand(16, 1, 8, 8) * 2 - 1, None, torch.randn(16, 8), None, cfg)
    assert changed(d_before, d)
    assert not changed(g_before, g)
    assert all(p.grad is None for p in g.parameters()), "fakes must be detached in the D step"
    assert set(metrics) == {"loss/d", "d/real", "d/fake"}
    assert 0.0 <= metrics["d/real"] <= 1.0 and 0.0 <= metrics["d/fake"] <= 1.0


def test_g_step_moves_g_only_and_unfreezes_d_after():
    g, d, opt_g, _, cfg = tiny_gan()
    g_before, d_before = snapshot(g), snapshot(d)
    g_step(g, d, opt_g, torch.randn(16, 8), None, cfg)
    assert changed(g_before, g)
    assert not changed(d_before, d)
    assert all(p.grad is None for p in d.parameters()), "D must be frozen during the G step"
    assert all(p.requires_grad for p in d.parameters())


def test_wgan_gp_d_step_runs_and_penalises():
    g, d, _, opt_d, _ = tiny_gan(batch_norm=False)
    cfg = StepConfig("wgan-gp", gp_weight=10.0)
    metrics = d_step(g, d, opt_d, torch.rand(8, 1, 8, 8), None, torch.randn(8, 8), None, cfg)
    assert torch.isfinite(torch.tensor(metrics["loss/d"]))


def test_round_runs_exactly_d_steps_then_g_steps():
    calls = []
    metrics = run_round(3, 2, lambda: calls.append("d") or {"loss/d": 1.0}, lambda: calls.append("g") or {"loss/g": 2.0})
    assert calls == ["d", "d", "d", "g", "g"]
    assert metrics == {"loss/d": 1.0, "loss/g": 2.0}


def test_ema_follows_generator_by_decay():
    g, *_ = tiny_gan()
    ema = make_ema(g)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    before = snapshot(ema)
    update_ema(ema, g, decay=0.9)
    for old, new, current in zip(before, ema.parameters(), g.parameters()):
        # float32: lerp vs 0.9 a + 0.1 b on values ~1, a few roundings (~2e-7); the float32 defaults fit.
        torch.testing.assert_close(new, 0.9 * old + 0.1 * current)


def test_lrs_from_config_win_after_optimizer_restore():
    model = torch.nn.Linear(2, 1)
    spec = load_job(JOBS / "digits-dcgan.yaml").optim.d
    saved = build_optimizer(model.parameters(), spec)
    restored = torch.optim.Adam(model.parameters(), lr=5.0)
    restored.load_state_dict(saved.state_dict())
    assert restored.param_groups[0]["lr"] == spec.lr
    apply_optimizer_spec(restored, spec.model_copy(update={"lr": 3e-3}))
    assert restored.param_groups[0]["lr"] == 3e-3


def test_seed_noise_is_a_fixed_minmax_pool():
    noise = NoiseSource(z_dim=100, distribution="normal-minmax", pool_size=600, pool_seed=0)
    z = noise.sample(50, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert z.shape == (50, 100)
    # Exact: (low - low) / r = 0 and (high - low) / r = r / r = 1 in IEEE division.
    torch.testing.assert_close(z.min(1).values, torch.zeros(50), rtol=0, atol=0)
    torch.testing.assert_close(z.max(1).values, torch.ones(50), rtol=0, atol=0)
    pool_rows = {tuple(row.tolist()) for row in noise.pool}
    assert all(tuple(row.tolist()) in pool_rows for row in z)
