"""Methods on 2 Ray Train workers end to end: a GAN with packing, R1 and DiffAugment, and an
InfoGAN, each registered in MLflow and drawn from by `zerosum sample` (InfoGAN by code)."""

import json
import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from zerosum_testing import JOBS, RAY_WORKER_LINE, run_cli, zerosum_here

pytestmark = pytest.mark.integration

SMALL = ["--set", "schedule.batch_size=16", "--set", "schedule.max_rounds=4", "--set", "eval.every_rounds=2",
         "--set", "checkpoint.every_rounds=2", "--set", "schedule.log_every_rounds=1",
         "--set", "eval.grid_size=16", "--set", "eval.num_samples=64", "--set", "scaling.num_workers=2"]


def finished_run(workdir, register_as: str):
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    version = client.get_model_version_by_alias(register_as, "candidate")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    return client, run


def test_gan_with_packing_r1_and_diffaugment_on_two_workers(workdir):
    out = run_cli("run", str(JOBS / "digits-dcgan.yaml"), *SMALL, "--set", "model.d.pack=2",
                  "--set", "loss.r1_gamma=1.0", "--set", "loss.reg_every=2",
                  "--set", "augment.policy=color,translation,cutout", "--set", "tracking.register_as=digits-packed",
                  cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # Like every run of the suite (conftest.workdir), it ran on the session's `zerosum up` head:
    # the summary says so, and its driver's log is in that head's session, not a Ray of its own.
    head = json.loads((Path(os.environ["ZEROSUM_HOME"]) / "head" / "head.json").read_text())
    assert f"note:         ray: ran on the head of `zerosum up` at {head['address']}" in out.stdout
    assert list((Path(head["temp_dir"]) / "session_latest" / "logs").glob("python-core-driver-*"))
    client, run = finished_run(workdir, "digits-packed")
    assert run.data.params["model.d.pack"] == "2" and run.data.params["augment.policy"] == "color,translation,cutout"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss/d")) == [1, 2, 3, 4]
    out = zerosum_here("sample", "models:/digits-packed@candidate", "-n", "16", "-o", "grid.png", cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    assert Image.open(workdir / "grid.png").size == (138, 138)


def test_infogan_on_two_workers_samples_by_code(workdir):
    # Run with -v: Ray's worker lines then reach the console live (tests/train/test_train_ray.py
    # checks that a default run shows none).
    out = run_cli("-v", "run", str(JOBS / "digits-dcgan.yaml"), *SMALL, "--set", "method=infogan",
                  "--set", "model.codes.categorical=10", "--set", "model.codes.continuous=2",
                  "--set", "tracking.register_as=digits-infogan", cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert RAY_WORKER_LINE.search(out.stdout + out.stderr), "-v shows Ray's worker lines"
    client, run = finished_run(workdir, "digits-infogan")
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "info/categorical"))
    assert steps == [1, 2, 3, 4]
    for flags, name in ((["--code", "3"], "three.png"), (["--sweep", "0"], "sweep.png")):
        out = zerosum_here("sample", "models:/digits-infogan@candidate", "-n", "16", *flags, "-o", name, cwd=workdir)
        assert out.returncode == 0, out.stderr[-3000:]
        assert Image.open(workdir / name).size == (138, 138)
    out = zerosum_here("sample", "models:/digits-infogan@candidate", "--code", "10", cwd=workdir)
    assert out.returncode == 2 and "--code: must be in 0..9" in out.stderr
