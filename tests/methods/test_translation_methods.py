"""pix2pix, CycleGAN and staged generation in-process (a LocalSession, an MLflow store in
tmp_path): they train, checkpoint every player, resume exactly, and are judged on held-out
inputs beside their task's baseline."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zerosum.config import job_to_dict, job_to_yaml, load_job
from zerosum.data import load_dataset
from zerosum.evaluation.featurizer import prepare_eval_spec
from zerosum.evaluation.translation import HELD_OUT_SEED
from zerosum.methods import method_for
from zerosum.serving import load_trained_generator
from zerosum.tracking import TrackedRun
from zerosum.train import checkpoint as ckpt
from zerosum.train.loop import train_worker
from zerosum_testing import JOBS, LocalSession

# Each test logs to sqlite:///<tmp_path>/mlflow.db: a copy of an empty store, not a new one.
pytestmark = pytest.mark.usefixtures("empty_store_in_tmp_path")

TINY = ["model.translator.base_channels=8", "model.patch.base_channels=8", "schedule.batch_size=16",
        "schedule.log_every_rounds=2", "scaling.num_workers=1", "checkpoint.keep=null"]


def tiny(job: str, rounds: int, *extra: str):
    return load_job(JOBS / job, [*TINY, f"schedule.max_rounds={rounds}", *extra])


def train(spec, tmp_path, session) -> TrackedRun:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = TrackedRun.start(uri, "translation", spec.name, {}, job_to_yaml(spec))
    train_worker({"job": job_to_dict(spec), "tracking_uri": uri, "run_id": run.run_id}, session)
    return run


def test_pix2pix_learns_superres_and_is_judged_beside_bicubic(shared_data, tmp_path):
    spec = tiny("mnist-superres-pix2pix.yaml", 40, "data.limit=640", "eval.every_rounds=20",
                "checkpoint.every_rounds=20", "eval.num_samples=200", "eval.metrics=[psnr,ssim]")
    run = train(spec, tmp_path, LocalSession(tmp_path))
    _, l1 = run.metric_history("g/l1")
    # L1 to the target falls (0.93 to 0.62 in 40 rounds here): G learns the task, not only to fool D.
    assert l1[-1] < 0.8 * l1[0]
    assert run.metric_history("eval/psnr")[0] == [20, 40]
    # The bicubic baseline, scored once, equals PSNR by its closed form on the same 200 inputs.
    steps, baseline = run.metric_history("baseline/psnr")
    test = load_dataset(spec.data, "test")
    chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(HELD_OUT_SEED))[:200]
    bicubic = F.interpolate(test.inputs[chosen], size=(28, 28), mode="bicubic", align_corners=False).clamp(-1, 1)
    mse = ((bicubic - test.samples[chosen]) / 2).pow(2).double().mean(dim=(1, 2, 3))  # on [0, 1] pixels
    expected = (10 * torch.log10(1 / mse)).mean().item()
    assert steps == [20]
    # float32 images, PSNR in float64 from torchmetrics against this float64 closed form: the
    # images' rounding (1e-7 relative) moves a mean of ~15 dB by under 1e-5 dB.
    assert math.isclose(baseline[0], expected, rel_tol=0, abs_tol=1e-5)
    assert {"eval/ssim", "baseline/ssim"} <= set(run.latest_metrics())


def test_pix2pix_with_l1_alone_has_no_critic(shared_data, tmp_path):
    spec = tiny("mnist-superres-pix2pix.yaml", 4, "data.limit=256", "loss.adversarial_weight=0",
                "eval.metrics=[]", "checkpoint.every_rounds=4")
    assert method_for(spec).critic_group == ()
    session = LocalSession(tmp_path)
    run = train(spec, tmp_path, session)
    state, _ = ckpt.read_checkpoint(tmp_path / session.reports[-1]["folder"], 0)
    assert set(state["players"]) == {"g"} and set(state["optimizers"]) == {"g"}
    assert "loss/d" not in run.latest_metrics() and "g/adversarial" not in run.latest_metrics()


# 160 MNIST images (10 batches of 16 an epoch) and 96 digits (6 batches): the round-4
# checkpoint (2 batches a round, so 8 drawn) falls mid-epoch in both domains.
CYCLE = ["data.limit=160", "data.source.limit=96", "eval.metrics=[]", "eval.every_rounds=4",
         "checkpoint.every_rounds=4"]


def test_cyclegan_checkpoints_all_four_players_and_resumes_exactly(shared_data, tmp_path):
    """8 rounds in one go, and 4 rounds then 4 more from the round-4 checkpoint, end on the
    same weights, bit for bit: every player, optimiser and RNG stream is in the checkpoint,
    and both domains' batches continue mid-epoch where they were."""
    spec = tiny("digits-to-mnist-cyclegan.yaml", 8, *CYCLE)
    whole = LocalSession(tmp_path / "whole")
    (tmp_path / "whole").mkdir()
    train(spec, tmp_path, whole)
    final, _ = ckpt.read_checkpoint(tmp_path / "whole" / "round_0000008", 0)
    assert set(final["players"]) == {"g", "f", "d_y", "d_x"} and set(final["optimizers"]) == {"g", "d"}

    resumed = LocalSession(tmp_path / "resumed", resume_from=tmp_path / "whole" / "round_0000004")
    (tmp_path / "resumed").mkdir()
    train(spec, tmp_path, resumed)
    again, _ = ckpt.read_checkpoint(tmp_path / "resumed" / "round_0000008", 0)
    for name, weights in final["players"].items():
        for key, tensor in weights.items():
            assert torch.equal(tensor, again["players"][name][key]), f"{name}.{key}"


def test_a_resumed_translator_scores_its_baseline_once(shared_data, tmp_path):
    spec = tiny("mnist-superres-pix2pix.yaml", 4, "data.limit=256", "eval.every_rounds=2", "checkpoint.every_rounds=2",
                "eval.num_samples=32", "eval.metrics=[psnr]")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = TrackedRun.start(uri, "translation", spec.name, {}, job_to_yaml(spec))
    first = LocalSession(tmp_path / "first")
    (tmp_path / "first").mkdir()
    train_worker({"job": job_to_dict(spec), "tracking_uri": uri, "run_id": run.run_id}, first)
    resumed = LocalSession(tmp_path / "resumed", resume_from=tmp_path / "first" / "round_0000002")
    (tmp_path / "resumed").mkdir()
    train_worker({"job": job_to_dict(spec), "tracking_uri": uri, "run_id": run.run_id}, resumed)
    assert run.metric_history("baseline/psnr")[0] == [2]
    assert run.metric_history("eval/psnr")[0] == [2, 4]


def test_cyclegan_is_judged_by_the_accuracy_of_translated_digits(shared_data, tmp_path, monkeypatch):
    from evals.classifier import load_classifier
    from zerosum.data import to_unit_images
    from zerosum.evaluation.translation import held_out_share

    monkeypatch.setenv("ZEROSUM_CACHE", str(tmp_path / "cache"))
    # digits -> digits at 8x8 keeps this fast; the classifier is the digits featurizer.
    spec = prepare_eval_spec(tiny("digits-to-mnist-cyclegan.yaml", 2, "data.limit=128", "data.source.limit=128",
                                  "eval.every_rounds=2", "checkpoint.every_rounds=2", "eval.metrics=[accuracy]",
                                  "eval.features=classifier", "data.name=digits", "data.root=null"))
    run = train(spec, tmp_path, LocalSession(tmp_path))
    metrics = run.latest_metrics()
    # The baseline is the untranslated held-out digits: the classifier's accuracy on them,
    # computed here straight from the classifier, is what the run logged.
    held_out = held_out_share(spec, 0, 1)
    classifier, _ = load_classifier(spec.eval.featurizer_path)
    with torch.no_grad():
        predicted = classifier(to_unit_images(held_out.baseline, spec.data.scale)).argmax(dim=1)
    assert metrics["baseline/accuracy"] == (predicted == held_out.labels).double().mean().item()
    assert metrics["baseline/accuracy"] > 0.85 and "eval/accuracy" in metrics


def test_staged_samples_are_the_super_resolved_first_stage(shared_data, tmp_path):
    from zerosum.methods.gan import GanMethod
    from zerosum.methods.pix2pix import Pix2PixMethod

    spec = tiny("mnist-staged.yaml", 4, "data.limit=256", "eval.metrics=[]", "checkpoint.every_rounds=4",
                "model.g.base_channels=8", "model.d.base_channels=8")
    session = LocalSession(tmp_path)
    run = train(spec, tmp_path, session)
    assert {"loss/d", "loss/g", "t/l1", "d_t/real"} <= set(run.latest_metrics())
    state, _ = ckpt.read_checkpoint(tmp_path / session.reports[-1]["folder"], 0)
    sampler = load_trained_generator(spec, state, ((1, 28, 28), 10))
    # The same sample by hand: the first stage's EMA weights at 14x14, then T's weights.
    first = GanMethod(spec).build((1, 14, 14), 10)["g"]
    first.load_state_dict(state["ema"])
    second = Pix2PixMethod(spec).build((1, 28, 28), 10)["g"]
    second.load_state_dict(state["players"]["t"])
    z = torch.randn(5, 100)
    with torch.no_grad():
        out = sampler(z)
        expected = second.eval()(first.eval()(z, None))
    assert out.shape == (5, 1, 28, 28) and torch.equal(out, expected)


@pytest.mark.parametrize("job", ["mnist-superres-pix2pix.yaml", "mnist-complete-pix2pix.yaml",
                                 "fashion-superres-pix2pix.yaml", "digits-to-mnist-cyclegan.yaml", "mnist-staged.yaml"])
def test_every_translation_job_validates(shared_data, job):
    spec = load_job(JOBS / job)
    assert spec.method in ("pix2pix", "cyclegan", "staged")
