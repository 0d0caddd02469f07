"""Steps for any method: exact counts per round, the right player moves, fakes detached,
metrics read once per window; EMA, noise and optimiser restores."""

import math

import torch

from zerosum.config import load_job
from zerosum.methods import PhaseContext
from zerosum.methods.gan import GanMethod
from zerosum.train.build import NoiseSource, apply_optimizer_spec, build_models, build_optimizer, noise_source_for
from zerosum.train.steps import MetricWindow, make_ema, no_autocast, run_phase, run_round, update_ema
from zerosum_testing import JOBS


def tiny_gan(loss="nonsaturating", batch_norm=True):
    torch.manual_seed(0)
    spec = load_job(JOBS / "digits-dcgan.yaml", [f"loss.name={loss}", "model.g.base_channels=8", "model.g.z_dim=8",
                                                 "model.d.base_channels=8", f"model.g.batch_norm={batch_norm}",
                                                 f"model.d.batch_norm={batch_norm}", "schedule.batch_size=16"])
    g, d = build_models(spec, (1, 8, 8), 10)
    players = {"g": g, "d": d}
    optimizers = {"g": torch.optim.Adam(g.parameters(), lr=1e-2), "d": torch.optim.Adam(d.parameters(), lr=1e-2)}
    ctx = PhaseContext(spec, noise_source_for(spec, 10), torch.Generator().manual_seed(1),
                       torch.Generator().manual_seed(2), torch.device("cpu"), no_autocast)
    return GanMethod(spec), players, optimizers, ctx


def reals(n=16):
    return {"x": torch.rand(n, 1, 8, 8) * 2 - 1, "y": None}


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_d_step_moves_d_only_and_detaches_fakes():
    method, players, optimizers, ctx = tiny_gan()
    g_before, d_before = snapshot(players["g"]), snapshot(players["d"])
    metrics = run_phase(method.critic_loss, players, ("d",), optimizers["d"], reals(), ctx, "loss/d")
    assert changed(d_before, players["d"])
    assert not changed(g_before, players["g"])
    assert all(p.grad is None for p in players["g"].parameters()), "fakes must be detached in the D step"
    assert set(metrics) == {"loss/d", "d/real", "d/fake"}
    assert all(isinstance(v, torch.Tensor) for v in metrics.values()), "no host sync in the step"
    assert 0.0 <= float(metrics["d/real"]) <= 1.0 and 0.0 <= float(metrics["d/fake"]) <= 1.0


def test_g_step_moves_g_only_and_unfreezes_d_after():
    method, players, optimizers, ctx = tiny_gan()
    g_before, d_before = snapshot(players["g"]), snapshot(players["d"])
    run_phase(method.generator_loss, players, ("g",), optimizers["g"], None, ctx, "loss/g")
    assert changed(g_before, players["g"])
    assert not changed(d_before, players["d"])
    assert all(p.grad is None for p in players["d"].parameters()), "D must be frozen during the G step"
    assert all(p.requires_grad for p in players["d"].parameters())


def test_wgan_gp_d_step_runs_and_penalises():
    method, players, optimizers, ctx = tiny_gan("wgan-gp", batch_norm=False)
    metrics = run_phase(method.critic_loss, players, ("d",), optimizers["d"], reals(8), ctx, "loss/d")
    assert torch.isfinite(metrics["loss/d"])


def test_wgan_clips_d_after_every_critic_update():
    method, players, optimizers, ctx = tiny_gan("wgan", batch_norm=False)
    run_phase(method.critic_loss, players, ("d",), optimizers["d"], reals(8), ctx, "loss/d",
              after_step=lambda view: method.after_critic_update(view, ctx))
    clip = ctx.spec.loss.clip
    assert max(float(p.detach().abs().max()) for p in players["d"].parameters()) <= clip


def test_round_runs_exactly_d_steps_then_g_steps():
    calls = []
    metrics = run_round(3, 2, lambda: calls.append("d") or {"loss/d": 1.0},
                        lambda: calls.append("g") or {"loss/g": 2.0})
    assert calls == ["d", "d", "d", "g", "g"]
    assert metrics == {"loss/d": 1.0, "loss/g": 2.0}


def test_metric_window_averages_on_device_and_keeps_nan():
    window = MetricWindow()
    window.add({"loss/d": torch.tensor(1.0), "loss/g": torch.tensor(3.0)})
    window.add({"loss/d": torch.tensor(2.0), "loss/g": torch.tensor(float("nan"))})
    read = window.read()
    # float32 means of small integers: exact.
    assert read["loss/d"] == 1.5 and math.isnan(read["loss/g"])
    assert window.read() == {}


def test_ema_tracks_generator():
    g = torch.nn.Linear(3, 2)
    ema = make_ema(g)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    before = snapshot(ema)
    update_ema(ema, g, decay=0.9)
    for old, new, current in zip(before, ema.parameters(), g.parameters()):
        # float32 lerp: one multiply-add per element, within the default float32 tolerance.
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


def test_eval_mode_puts_every_submodule_back_in_its_own_mode():
    from torch import nn

    from zerosum.train.steps import eval_mode

    live, ema = nn.BatchNorm1d(2), nn.BatchNorm1d(2).eval()  # a training G beside its EMA copy
    both = nn.Sequential(live, ema)
    with eval_mode(both):
        assert not live.training and not ema.training
    assert live.training and not ema.training and both.training
