"""pix2pix and CycleGAN on 2 Ray Train workers (every player DDP-wrapped; CycleGAN's four
survive a killed worker), registered in MLflow with an image signature and loaded back by
`zerosum translate`; its bad inputs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml
from mlflow.models import get_model_info
from mlflow.tracking import MlflowClient
from PIL import Image

from zerosum_testing import JOBS, SHARED_DATA, run_cli, zerosum_here

pytestmark = pytest.mark.integration

SMALL = ["--set", "model.translator.base_channels=8", "--set", "model.patch.base_channels=8",
         "--set", "schedule.batch_size=16", "--set", "schedule.max_rounds=4", "--set", "eval.every_rounds=2",
         "--set", "checkpoint.every_rounds=2", "--set", "schedule.log_every_rounds=1", "--set", "eval.grid_size=9",
         "--set", "eval.num_samples=64", "--set", "scaling.num_workers=2"]


def local_spec(workdir, job: str, metrics: list[str] | None = None, **data):
    """The job in the workdir with data.root pointing at the shared data (roots are relative
    to the working directory, and the tests run elsewhere), `data` and eval.metrics changed."""
    raw = yaml.safe_load((JOBS / job).read_text())
    raw["data"] |= {"root": str(SHARED_DATA / "mnist"), **data}
    raw["eval"]["metrics"] = raw["eval"]["metrics"] if metrics is None else metrics
    path = workdir / job
    path.write_text(yaml.safe_dump(raw))
    return path


def trained(workdir, spec, register_as: str, *extra: str, env: dict | None = None) -> str:
    out = run_cli("run", str(spec), *SMALL, "--set", f"tracking.register_as={register_as}", *extra, cwd=workdir,
                  env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return f"models:/{register_as}@candidate"


def test_pix2pix_and_cyclegan_train_on_two_workers_and_translate(shared_data, workdir):
    # pix2pix on the 8x8 digits (4x4 -> 8x8) on 2 workers: the per-image scores of both ranks'
    # shares are gathered (features go the way every method's do, tested with the GANs).
    superres = local_spec(workdir, "mnist-superres-pix2pix.yaml", ["psnr"], name="digits", root=None, factor=2)
    unpaired = local_spec(workdir, "digits-to-mnist-cyclegan.yaml", [])
    pix2pix = trained(workdir, superres, "superres")
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    logged = client.get_run(client.get_model_version_by_alias("superres", "candidate").run_id).data.metrics
    assert {"eval/psnr", "baseline/psnr"} <= set(logged)
    # Rank 1 is killed at round 4; the group restarts from a checkpoint of all four players (round
    # 2, or 3 once Ray has registered it: as tests/train/test_train_ray.py's killed GAN worker).
    cyclegan = trained(workdir, unpaired, "digits-to-mnist", "--set", "data.limit=128",
                       "--set", "data.source.limit=128", "--set", "scaling.max_failures=1",
                       "--set", "schedule.max_rounds=6", "--set", "eval.every_rounds=3",
                       env={"ZEROSUM_INJECT_FAULT": "round=4,rank=1"})
    (run_dir,) = workdir.glob("runs/digits-to-mnist-cyclegan-*")
    assert (run_dir / ".fault-injected").read_text().startswith("killed rank 1 at round 4")
    run = client.get_run(client.get_model_version_by_alias("digits-to-mnist", "candidate").run_id)
    assert run.info.status == "FINISHED" and run.data.tags["zerosum.resumed_from_round"] in {"2", "3"}
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "g/cycle")) == [1, 2, 3, 4, 5, 6]

    # The registered signature takes one image batch, not z.
    inputs = get_model_info(pix2pix).signature.inputs.to_dict()
    assert [(i["name"], tuple(i["tensor-spec"]["shape"])) for i in inputs] == [("images", (-1, 1, 4, 4))]
    # 9 images a grid, 3 x 3 tiles with 2 px padding: digits shown at 32 px, MNIST at 28 px.
    for model, spec, panels, grid_px in ((pix2pix, superres, 3, 3 * 32 + 8), (cyclegan, unpaired, 2, 3 * 28 + 8)):
        out = zerosum_here("translate", model, "--input", str(spec), "-n", "9", "-o", "grid.png", cwd=workdir)
        assert out.returncode == 0, out.stderr[-3000:]
        # input | output (| target, paired tasks only) side by side.
        assert panels * grid_px <= Image.open(workdir / "grid.png").width < (panels + 1) * grid_px

    # A folder of the input size translates; one of another size is refused by file.
    good, bad = workdir / "small", workdir / "wrong"
    for folder, side in ((good, 4), (bad, 28)):
        folder.mkdir()
        for i in range(3):
            Image.fromarray(np.full((side, side), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    out = zerosum_here("translate", pix2pix, "--input", str(good), "-o", "folder.png", cwd=workdir)
    assert out.returncode == 0 and (workdir / "folder.png").is_file(), out.stderr[-3000:]
    out = zerosum_here("translate", pix2pix, "--input", str(bad), cwd=workdir)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (f"error: --input {bad}: 0.png is 28x28; this model translates "
                                                   "4x4 images")
    out = zerosum_here("sample", pix2pix, cwd=workdir)
    assert out.returncode == 2 and "this model translates images" in out.stderr
