"""MLflow: the only module that imports it. Workers use it on rank 0 only.

Layout in MLflow: one experiment per job name; one run per `zerosum run` (a
resumed run continues the same MLflow run); metric keys `loss/d`, `loss/g`,
`d/real`, `d/fake`, `eval/*`, `perf/*` with the round as step; sample grids as
images with their step; the generator as a pt2 model, registered, with an alias.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

PARAM_VALUE_LIMIT = 6000
BATCH_LIMIT = 100


def resolve_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else MLflow's own default made absolute (Ray workers
    run in another directory, and a relative sqlite path would split the store)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def experiment_id_for(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def start_run(tracking_uri: str, experiment: str, run_name: str, params: dict[str, Any],
              config_yaml: str, tags: dict[str, str] | None = None, parent_run_id: str | None = None) -> str:
    """Create a run with its flattened params and config.yaml; returns the run id."""
    client = MlflowClient(tracking_uri)
    run_tags = dict(tags or {})
    if parent_run_id:
        run_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id_for(client, experiment), run_name=run_name, tags=run_tags)
    run_id = run.info.run_id
    items = [Param(key, str(value)[:PARAM_VALUE_LIMIT]) for key, value in params.items()]
    for start in range(0, len(items), BATCH_LIMIT):
        client.log_batch(run_id, params=items[start: start + BATCH_LIMIT])
    client.log_text(run_id, config_yaml, "config.yaml")
    return run_id


def reopen_run(tracking_uri: str, run_id: str) -> None:
    """Mark a resumed run as running again."""
    MlflowClient(tracking_uri).update_run(run_id, status="RUNNING")


def end_run(tracking_uri: str, run_id: str, status: str = "FINISHED") -> None:
    MlflowClient(tracking_uri).set_terminated(run_id, status=status)


def set_tags(tracking_uri: str, run_id: str, tags: dict[str, str]) -> None:
    client = MlflowClient(tracking_uri)
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_metric_batch(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int) -> None:
    """All metrics at one step, in batches of MLflow's size limit."""
    now = int(time.time() * 1000)
    items = [Metric(key, float(value), now, step) for key, value in metrics.items()]
    for start in range(0, len(items), BATCH_LIMIT):
        client.log_batch(run_id, metrics=items[start: start + BATCH_LIMIT])


class RunLogger:
    """Metrics and sample images for one run, from rank 0 of the worker group.

    A resumed run replays rounds after its last checkpoint; steps already in the
    store are skipped so that no step is logged twice.
    """

    def __init__(self, tracking_uri: str, run_id: str, step_key: str = "loss/d"):
        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id
        self.last_logged_step = last_metric_step(tracking_uri, run_id, step_key)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if step > self.last_logged_step:
            log_metric_batch(self.client, self.run_id, metrics, step)

    def log_samples(self, image: np.ndarray, step: int) -> None:
        """image: uint8 (H, W, C) grid; logged under key 'samples' with its step."""
        if step <= self.last_logged_step:
            return
        self.client.log_image(self.run_id, image, key="samples", step=step)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def latest_metrics(tracking_uri: str, run_id: str) -> dict[str, float]:
    """The newest value of every metric of the run."""
    return dict(MlflowClient(tracking_uri).get_run(run_id).data.metrics)


def metric_history(tracking_uri: str, run_id: str, key: str) -> tuple[list[int], list[float]]:
    history = sorted(MlflowClient(tracking_uri).get_metric_history(run_id, key), key=lambda m: m.step)
    return [m.step for m in history], [m.value for m in history]


def log_loss_curves(tracking_uri: str, run_id: str) -> None:
    """One figure of loss/d and loss/g against round, logged as loss_curves.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for key in ("loss/d", "loss/g"):
        steps, values = metric_history(tracking_uri, run_id, key)
        axis.plot(steps, values, label=key)
    axis.set_xlabel("round")
    axis.set_ylabel("loss")
    axis.legend()
    figure.tight_layout()
    MlflowClient(tracking_uri).log_figure(run_id, figure, "loss_curves.png")
    plt.close(figure)


def log_generator(tracking_uri: str, run_id: str, model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...],
                  metadata: dict[str, Any], register_as: str | None, alias: str = "candidate") -> str | None:
    """Log G as a pt2 model (no pickle), register it and point `alias` at the new version.

    MLflow reserves the alias 'latest' (`models:/NAME/latest` already means the newest
    version), so a freshly trained version gets the alias 'candidate'; Tune campaigns
    give their best version 'champion'.

    example_inputs: (z,) or (z, y); batch dimension is dynamic in the signature.
    Returns the model version, or None when not registered.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    mlflow.set_tracking_uri(tracking_uri)
    names = ["z", "y"][: len(example_inputs)]
    inputs = Schema([TensorSpec(np.dtype(str(t.dtype).removeprefix("torch.")), (-1, *t.shape[1:]), name)
                     for name, t in zip(names, example_inputs)])
    with torch.no_grad():
        output = model(*example_inputs)
    outputs = Schema([TensorSpec(np.dtype("float32"), (-1, *output.shape[1:]))])
    example = example_inputs[0].numpy() if len(example_inputs) == 1 else tuple(t.numpy() for t in example_inputs)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model, name="generator", input_example=example, signature=ModelSignature(inputs, outputs),
            metadata=metadata, registered_model_name=register_as, serialization_format="pt2",
            # MLflow's JSON serving check cannot express tensor inputs for the torch flavour;
            # tests load the logged model and call it instead.
            validate_serving_input=False,
        )
    version = info.registered_model_version
    if register_as and version is not None:
        MlflowClient(tracking_uri).set_registered_model_alias(register_as, alias, str(version))
    return None if version is None else str(version)


def normalise_model_uri(model_uri: str) -> str:
    """`models:/NAME@latest` -> `models:/NAME/latest`: 'latest' is no alias in MLflow."""
    if model_uri.startswith("models:/") and model_uri.lower().endswith("@latest"):
        return model_uri[: -len("@latest")] + "/latest"
    return model_uri


def load_generator(model_uri: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A logged generator and its metadata (z_dim, num_classes, ...)."""
    from mlflow.models import get_model_info

    model_uri = normalise_model_uri(model_uri)

    metadata = get_model_info(model_uri).metadata or {}
    return mlflow.pytorch.load_model(model_uri), metadata


# --------------------------------------------------------------------------- Tune campaigns
# A campaign is a parent run; each trial is a nested run tagged with its Tune trial id,
# so that a restarted trial (PBT exploit, resumed campaign) finds its run again.

TRIAL_TAG = "zerosum.trial_id"


def find_child_run(tracking_uri: str, parent_run_id: str, trial_id: str) -> str | None:
    """The nested run of `parent_run_id` tagged with this Tune trial id, if any."""
    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' "
                                            f"and tags.`{TRIAL_TAG}` = '{trial_id}'", max_results=1)
    return runs[0].info.run_id if runs else None


def child_runs(tracking_uri: str, parent_run_id: str) -> dict[str, dict[str, Any]]:
    """{trial id: {"run_id", "status", "tags"}} for every nested run of a campaign."""
    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=10_000)
    return {run.data.tags.get(TRIAL_TAG, run.info.run_id): {"run_id": run.info.run_id, "status": run.info.status,
                                                             "tags": dict(run.data.tags)} for run in runs}


def log_metrics_at(tracking_uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Log finite and non-finite floats alike at one step (no skipping, unlike RunLogger)."""
    log_metric_batch(MlflowClient(tracking_uri), run_id, metrics, step)


def log_text(tracking_uri: str, run_id: str, text: str, artifact_file: str) -> None:
    MlflowClient(tracking_uri).log_text(run_id, text, artifact_file)


def log_figure(tracking_uri: str, run_id: str, figure, artifact_file: str) -> None:
    """A matplotlib figure as a PNG artifact."""
    MlflowClient(tracking_uri).log_figure(run_id, figure, artifact_file)


def log_artifact(tracking_uri: str, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    MlflowClient(tracking_uri).log_artifact(run_id, str(path), artifact_path)


def set_model_version_tags(tracking_uri: str, name: str, version: str, tags: dict[str, Any]) -> None:
    client = MlflowClient(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def run_status(tracking_uri: str, run_id: str) -> str:
    return MlflowClient(tracking_uri).get_run(run_id).info.status


def last_metric_step(tracking_uri: str, run_id: str, key: str) -> int:
    """The highest step logged for `key` in the run, or -1."""
    history = MlflowClient(tracking_uri).get_metric_history(run_id, key)
    return max((m.step for m in history), default=-1)
