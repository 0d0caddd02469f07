"""The driver side of `zerosum run`: run folder, MLflow run, TorchTrainer, final model.

A run folder is `<tracking.storage_path>/<run name>/`; Ray Train keeps its
checkpoints there, and `run.json` records the MLflow run id so that
`zerosum run SPEC --resume` continues both the Ray run and the MLflow run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from zerosum import tracking
from zerosum.config import JobSpec, flatten, job_to_dict, job_to_yaml
from zerosum.data import describe_dataset, to_unit_images
from zerosum.errors import ZerosumError
from zerosum.featurizer import prepare_eval_spec
from zerosum.samples import samples_to_image, save_png
from zerosum.train import checkpoint as ckpt
from zerosum.train.setup import build_models, noise_source_for

log = logging.getLogger(__name__)

RUN_RECORD = "run.json"
FAULT_ENV = "ZEROSUM_INJECT_FAULT"


@dataclass
class RunResult:
    run_dir: Path
    mlflow_run_id: str
    rounds_done: int
    model_uri: str | None
    grid_path: Path | None
    final_metrics: dict[str, float]


def new_run_name(spec: JobSpec) -> str:
    return f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def latest_run_dir(spec: JobSpec) -> Path:
    """The newest run folder of this job that has a run record, for --resume."""
    root = spec.tracking.storage_path
    candidates = sorted((p for p in root.glob(f"{spec.name}-*") if (p / RUN_RECORD).is_file()),
                        key=lambda p: (p / RUN_RECORD).stat().st_mtime)
    if not candidates:
        raise ZerosumError(f"--resume: no earlier run of '{spec.name}' under {root} (tracking.storage_path)")
    return candidates[-1]


def prepare_run(spec: JobSpec, resume: bool, tracking_uri: str) -> tuple[Path, str]:
    """Create (or reopen) the run folder and the MLflow run; returns (run_dir, run_id)."""
    if resume:
        run_dir = latest_run_dir(spec)
        record = json.loads((run_dir / RUN_RECORD).read_text())
        tracking.reopen_run(record["tracking_uri"], record["mlflow_run_id"])
        return run_dir, record["mlflow_run_id"]
    run_dir = spec.tracking.storage_path / new_run_name(spec)
    run_dir.mkdir(parents=True, exist_ok=False)
    config_yaml = job_to_yaml(spec)
    ckpt.atomic_write_text(config_yaml, run_dir / ckpt.CONFIG_FILE)
    run_id = tracking.start_run(tracking_uri, spec.experiment_name, run_dir.name, flatten(job_to_dict(spec)),
                                config_yaml, tags={"zerosum.run_dir": str(run_dir)})
    record = {"mlflow_run_id": run_id, "tracking_uri": tracking_uri, "run_name": run_dir.name}
    ckpt.atomic_write_text(json.dumps(record, indent=2), run_dir / RUN_RECORD)
    return run_dir, run_id


def fault_from_env(run_dir: Path) -> dict[str, Any] | None:
    """ZEROSUM_INJECT_FAULT='round=3,rank=1' kills that worker once (tests of recovery)."""
    text = os.environ.get(FAULT_ENV)
    if not text:
        return None
    fields = dict(part.split("=", 1) for part in text.split(","))
    return {"round": int(fields["round"]), "rank": int(fields.get("rank", 0)),
            "marker": str(run_dir / ".fault-injected")}


def init_ray(with_dashboard: bool = False) -> None:
    """Connect to RAY_ADDRESS if set, else start a local instance (token auth stays on).

    Campaigns of Ray Train trials need the dashboard: its State API is how Ray Train
    frees a finished run's placement group, without which the next trial's workers starve."""
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=with_dashboard, configure_logging=True, logging_level=logging.WARNING)


def build_trainer(spec: JobSpec, run_dir: Path, loop_config: dict[str, Any], callbacks: list | None = None):
    """A TorchTrainer for the spec, writing checkpoints into run_dir."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from zerosum.train.loop import train_loop_per_worker

    scaling = spec.scaling
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker={"CPU": scaling.cpus_per_worker}),
        run_config=RunConfig(
            name=run_dir.name, storage_path=str(run_dir.parent),
            failure_config=FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=spec.checkpoint.keep),
            callbacks=callbacks or [],
        ),
    )


def run_job(spec: JobSpec, resume: bool = False, watch: Callable[[str, str, int], Any] | None = None) -> RunResult:
    """Train the job on Ray Train and log the final generator. `watch(uri, run_id, total)`
    is an optional context manager factory that shows progress while training runs."""
    spec = prepare_eval_spec(spec)
    tracking_uri = tracking.resolve_tracking_uri()
    run_dir, run_id = prepare_run(spec, resume, tracking_uri)
    init_ray()
    loop_config = {"job": job_to_dict(spec), "tracking_uri": tracking_uri, "run_id": run_id,
                   "fault": fault_from_env(run_dir)}
    trainer = build_trainer(spec, run_dir, loop_config)
    try:
        with watch(tracking_uri, run_id, spec.schedule.total_rounds) if watch else nullcontext():
            result = trainer.fit()
    except Exception as err:
        tracking.end_run(tracking_uri, run_id, "FAILED")
        raise ZerosumError(f"training failed: {err}\nresume with: zerosum run SPEC --resume") from err
    finished = finish_run(spec, run_dir, run_id, tracking_uri, Path(result.checkpoint.path))
    finished.final_metrics = {k: float(v) for k, v in (result.metrics or {}).items() if k.startswith("eval/")}
    return finished


def finish_run(spec: JobSpec, run_dir: Path, run_id: str, tracking_uri: str, checkpoint_dir: Path) -> RunResult:
    """Log curves, a final grid and the generator (registered, alias 'candidate'); close the run."""
    state = ckpt.load_weights(checkpoint_dir / ckpt.STATE_FILE)
    tracking.log_loss_curves(tracking_uri, run_id)
    grid_path = run_dir / "samples.png"
    shape = describe_dataset(spec.data)
    save_png(sample_picture(spec, load_trained_generator(spec, state, shape), shape[1]), grid_path)
    version = log_checkpoint_generator(spec, state, tracking_uri, run_id, spec.tracking.register_as, "candidate")
    tracking.end_run(tracking_uri, run_id)
    model_uri = f"models:/{spec.tracking.register_as}@candidate" if version else f"runs:/{run_id}/generator"
    return RunResult(run_dir, run_id, int(state["rounds_done"]), model_uri, grid_path, {})


def log_checkpoint_generator(spec: JobSpec, state: dict[str, Any], tracking_uri: str, run_id: str,
                             register_as: str | None, alias: str, extra_metadata: dict[str, Any] | None = None):
    """Log the checkpoint's G (EMA when kept) as a serving model, register it and set `alias`.
    Used for a run's final model and for a campaign's champion. Returns the version or None."""
    shape = describe_dataset(spec.data)
    example, metadata = serving_example(spec, shape)
    metadata.update(extra_metadata or {})
    served = ServingGenerator(load_trained_generator(spec, state, shape), spec.data.scale, metadata)
    return tracking.log_generator(tracking_uri, run_id, served, example, metadata, register_as, alias=alias)


def load_trained_generator(spec: JobSpec, state: dict[str, Any], shape: tuple[tuple[int, ...], int]) -> nn.Module:
    """G (EMA weights when kept) from a checkpoint's state, in eval mode on CPU.
    shape: (sample_shape, num_classes) as `describe_dataset` gives them."""
    generator, _ = build_models(spec, *shape)
    generator.load_state_dict(state["ema"] if state.get("ema") is not None else state["generator"])
    return generator.eval()


@torch.no_grad()
def sample_picture(spec: JobSpec, generator: nn.Module, num_classes: int, n: int = 64):
    noise = noise_source_for(spec, num_classes)
    rng = torch.Generator().manual_seed(spec.schedule.seed)
    z, y = noise.sample(n, rng, torch.device("cpu")), noise.labels(n, rng, torch.device("cpu"))
    return samples_to_image(generator(z, y), spec.data.scale)


def serving_example(spec: JobSpec, shape: tuple[tuple[int, ...], int]) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
    """Example inputs for export and the metadata `zerosum sample` needs."""
    sample_shape, num_classes = shape
    classes = num_classes if spec.model.conditional else 0
    g = spec.model.g
    example = (torch.zeros(2, g.z_dim),) + ((torch.zeros(2, dtype=torch.int64),) if classes else ())
    metadata = {"z_dim": g.z_dim, "z_distribution": g.z_distribution, "num_classes": classes,
                "sample_shape": list(sample_shape), "output": "points" if len(sample_shape) == 1 else "unit-images",
                "job": spec.name}
    return example, metadata


class ServingGenerator(nn.Module):
    """G for users: images come out in [0, 1] whatever the training scale; points as they are."""

    def __init__(self, generator: nn.Module, scale: str, metadata: dict[str, Any]):
        super().__init__()
        self.generator = generator.eval()
        self.scale = scale
        self.images = metadata["output"] == "unit-images"
        self.conditional = metadata["num_classes"] > 0

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.generator(z, y if self.conditional else None)
        return to_unit_images(out, self.scale) if self.images else out
