"""In-training evaluation on a tiny MNIST run: metrics logged, the stopping rule ends the run."""

import os

import pytest
from mlflow.tracking import MlflowClient

from evals.classifier import fit_classifier, save_classifier
from zerosum.config import DataSpec
from zerosum.data import load_dataset
from zerosum_testing import JOBS, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def quick_featurizer(tmp_path, shared_data):
    """A classifier trained for a few seconds: good enough to give features, not a reference."""
    data = load_dataset(DataSpec(name="mnist", root=shared_data / "mnist", scale="unit", limit=4000))
    model = fit_classifier(data.samples, data.labels, epochs=1, seed=0)
    return save_classifier(model, tmp_path / "featurizer.pt", {"dataset": "mnist"})


def test_tiny_mnist_run_logs_eval_metrics_and_stops_by_rule(workdir, shared_data, quick_featurizer, monkeypatch):
    monkeypatch.setenv("ZEROSUM_CACHE", str(workdir / "cache"))
    # min_delta is huge, so the second evaluation cannot improve and patience 1 stops the run.
    out = run_cli("run", str(JOBS / "mnist-dcgan.yaml"),
                  "--set", f"data.root={shared_data / 'mnist'}", "--set", "data.limit=2000",
                  "--set", "model.g.base_channels=8", "--set", "model.d.base_channels=8",
                  "--set", "schedule.batch_size=32", "--set", "schedule.max_rounds=60",
                  "--set", "schedule.log_every_rounds=5", "--set", "eval.every_rounds=10",
                  "--set", "eval.num_samples=200", "--set", "eval.metrics=[fid, kid, mmd, classes]",
                  "--set", f"eval.featurizer_path={quick_featurizer}", "--set", "eval.mmd_permutations=100",
                  "--set", "eval.stop.patience=1", "--set", "eval.stop.min_delta=1e9",
                  "--set", "checkpoint.every_rounds=10", "--set", "scaling.num_workers=2",
                  cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("mnist-dcgan").experiment_id])
    assert run.data.tags["zerosum.stopped_at_round"] == "20"
    assert "eval/fid" in run.data.tags["zerosum.stop_reason"]
    for key in ("eval/fid", "eval/kid", "eval/mmd2", "eval/mmd_pvalue", "eval/classes_covered"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [10, 20], key
    assert run.data.metrics["eval/fid"] > 0
    assert 0 < run.data.metrics["eval/mmd_pvalue"] <= 1
    assert 1 <= run.data.metrics["eval/classes_covered"] <= 10
    # The real side was computed once and cached on disk.
    assert len(list((workdir / "cache" / "real-features").glob("mnist-test-classifier-*-n200.npz"))) == 1
