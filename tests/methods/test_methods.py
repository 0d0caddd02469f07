"""Each method as a plug-in: its players, and which of them each phase moves.

One critic phase moves the critic group only; one generator phase moves the generator
group only (the other players are frozen and keep no gradient); a whole round of the
real loop trains every player the method has, and its checkpoint holds them by name.
"""

import pytest
import torch

from zerosum.config import apply_overrides, read_yaml, validate_job
from zerosum.methods import METHODS, PhaseContext, method_for
from zerosum.train.loop import train_one_round
from zerosum.train.state import build_worker_state, group_players
from zerosum.train.steps import no_autocast, run_phase
from zerosum_testing import JOBS, SHARED_DATA, LocalSession

SHAPE = (1, 8, 8)
BASE = ["data.name=digits", "model.g.arch=dcgan", "model.d.arch=dcgan", "model.g.base_channels=8",
        "model.d.base_channels=8", "model.g.z_dim=8", "schedule.batch_size=8", "model.conditional=false"]
METHOD_SETS = {
    "gan": ["loss.name=rpgan", "loss.r1_gamma=1.0", "loss.r2_gamma=1.0", "model.d.pack=2",
            "augment.policy=color,translation,cutout"],
    "gmmn": ["method=gmmn"],
    "mmd-gan": ["method=mmd-gan"],
    "infogan": ["method=infogan", "model.codes.categorical=10", "model.codes.continuous=2"],
}
# The image-to-image methods, on the digits' tasks: pix2pix super-resolves 4x4 -> 8x8,
# CycleGAN translates digits to digits (unpaired), staged draws 14x14 MNIST then 28x28.
TRANSLATION_SETS = {
    "pix2pix": {"data": {"name": "digits", "task": "superres", "factor": 2}},
    "cyclegan": {"data": {"name": "digits", "task": "unpaired", "source": {"name": "digits"}}, "loss": {"name": "lsgan"}},
    "staged": {"data": {"name": "mnist", "root": str(SHARED_DATA / "mnist"),
                        "task": "superres", "factor": 2},
               "model": {"g": {"base_channels": 8, "z_dim": 8}, "d": {"base_channels": 8}}},
}
SHAPES = {"pix2pix": (1, 8, 8), "cyclegan": (1, 8, 8), "staged": (1, 28, 28)}
INPUT_SHAPES = {"pix2pix": (1, 4, 4), "cyclegan": (1, 8, 8), "staged": (1, 14, 14)}
EXPECTED_PLAYERS = {"gan": {"g", "d"}, "gmmn": {"g"}, "mmd-gan": {"g", "d"}, "infogan": {"g", "d", "q"},
                    "pix2pix": {"g", "d"}, "cyclegan": {"g", "f", "d_y", "d_x"}, "staged": {"g", "d", "t", "d_t"}}
ALL_METHODS = [*METHOD_SETS, *TRANSLATION_SETS]


def spec_for(method: str):
    """digits-dcgan.yaml made small, as the method; gmmn's copy drops the D and loss sections,
    which that method refuses. A translation method's spec is its task's, small."""
    if method in TRANSLATION_SETS:
        raw = {"name": f"tiny-{method}", "method": method, "schedule": {"batch_size": 8, "max_rounds": 1},
               "model": {"translator": {"base_channels": 4}, "patch": {"base_channels": 4}}}
        for key, value in TRANSLATION_SETS[method].items():
            raw[key] = {**raw.get(key, {}), **value}
        return validate_job(raw, source=f"tiny {method}")
    raw = read_yaml(JOBS / "digits-dcgan.yaml")
    overrides = BASE + METHOD_SETS[method]
    if method == "gmmn":
        raw["model"].pop("d")
        raw.pop("loss", None)
        overrides = [o for o in overrides if not o.startswith("model.d.")]
    return validate_job(apply_overrides(raw, overrides), source=f"digits-dcgan as {method}")


def snapshot(players):
    return {name: [p.detach().clone() for p in module.parameters()] for name, module in players.items()}


def moved(before, players) -> set[str]:
    return {name for name, module in players.items()
            if any(not torch.equal(a, b) for a, b in zip(before[name], module.parameters()))}


def context(spec, state):
    return PhaseContext(spec, state.noise, state.noise_rng, state.augment_rng, torch.device("cpu"), no_autocast)


def batch(method: str = "gan"):
    """8 reals (and a task's 8 inputs) in [-1, 1], with labels."""
    reals = {"x": torch.rand(8, *SHAPES.get(method, SHAPE)) * 2 - 1, "y": torch.randint(10, (8,))}
    if method in INPUT_SHAPES:
        reals |= {"c": torch.rand(8, *INPUT_SHAPES[method]) * 2 - 1, "c_y": torch.randint(10, (8,))}
    return reals


def test_the_registry_is_the_catalog():
    from zerosum.catalog import METHOD_NAMES

    assert tuple(METHODS) == METHOD_NAMES


@pytest.mark.parametrize("method", ALL_METHODS)
def test_each_phase_moves_exactly_its_players(method):
    spec = spec_for(method)
    state = build_worker_state(spec, SHAPES.get(method, SHAPE), 10, LocalSession())
    assert set(state.players) == EXPECTED_PLAYERS[method]
    ctx = context(spec, state)
    groups = group_players(state.method)
    if "d" in groups:
        before = snapshot(state.players)
        metrics = run_phase(state.method.critic_loss, state.players, groups["d"], state.optimizers["d"],
                            batch(method), ctx, "loss/d")
        assert moved(before, state.players) == set(groups["d"])
        assert torch.isfinite(metrics["loss/d"])
        assert all(p.grad is None for name in set(state.players) - set(groups["d"])
                   for p in state.players[name].parameters()), "frozen players keep no gradient"
    before = snapshot(state.players)
    reals = batch(method) if state.method.generator_needs_reals() else None
    metrics = run_phase(state.method.generator_loss, state.players, groups["g"], state.optimizers["g"],
                        reals, ctx, "loss/g")
    assert moved(before, state.players) == set(groups["g"])
    assert torch.isfinite(metrics["loss/g"])
    assert all(p.requires_grad for module in state.players.values() for p in module.parameters())


@pytest.mark.parametrize("method", ALL_METHODS)
def test_a_round_of_the_loop_trains_every_player_and_checkpoints_them(method):
    spec = spec_for(method)
    state = build_worker_state(spec, SHAPES.get(method, SHAPE), 10, LocalSession())
    before = snapshot(state.players)
    batches = iter(lambda: batch(method), None)
    metrics = train_one_round(state, batches, spec.schedule, context(spec, state))
    assert moved(before, state.players) == EXPECTED_PLAYERS[method]
    assert ("loss/d" in metrics) == (method != "gmmn") and "loss/g" in metrics
    saved = state.model_state()
    assert set(saved["players"]) == EXPECTED_PLAYERS[method] and saved["method"] == method
    assert set(saved["optimizers"]) == set(group_players(method_for(spec)))


def test_every_trained_parameter_gets_a_gradient():
    """DDP refuses a wrapped module with parameters its loss never reaches (MMD-GAN's critic
    once kept D's unused logit head): each phase must touch all of its players' parameters."""
    for method in ALL_METHODS:
        spec = spec_for(method)
        state = build_worker_state(spec, SHAPES.get(method, SHAPE), 10, LocalSession())
        ctx = context(spec, state)
        groups = group_players(state.method)
        for side, loss in (("d", state.method.critic_loss), ("g", state.method.generator_loss)):
            if side not in groups:
                continue
            view = dict(state.players)
            reals = batch(method) if side == "d" or state.method.generator_needs_reals() else None
            out = loss(view, reals, ctx)
            out["loss"].backward()
            idle = [f"{name}.{p_name}" for name in groups[side]
                    for p_name, p in state.players[name].named_parameters() if p.grad is None]
            assert idle == [], (method, side, idle)
            for module in state.players.values():
                module.zero_grad(set_to_none=True)


@pytest.mark.parametrize("method", sorted(METHOD_SETS))
def test_the_generator_input_width_is_the_noise_width(method):
    from zerosum.train.build import generator_input_dim, noise_source_for

    spec = spec_for(method)
    assert generator_input_dim(spec) == noise_source_for(spec, 10).input_dim
