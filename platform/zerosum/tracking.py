"""MLflow: the only module that imports it. Workers use it on rank 0 only.

A run is a `TrackedRun` (store URI and run id, the handle every caller passes
around); MLflow clients are made once per store and reused.

Layout in MLflow: one experiment per job name; one run per `zerosum run` (a
resumed run continues the same MLflow run); metric keys `loss/d`, `loss/g`,
`d/real`, `d/fake`, `eval/*`, `perf/*` with the round as step; sample grids as
images with their step; the generator as a pt2 model, registered, with an alias.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from dataclasses import dataclass
from functools import cache
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
# A campaign is a parent run; each trial is a nested run tagged with its Tune trial id,
# so that a restarted trial (PBT exploit, resumed campaign) finds its run again.
TRIAL_TAG = "zerosum.trial_id"
# Warnings from the workers, numbered: zerosum.warning.1, zerosum.warning.2, ...
WARNING_TAG = "zerosum.warning"
STOP_REASON_TAG = "zerosum.stop_reason"


def resolve_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else MLflow's own default made absolute (Ray workers
    run in another directory, and a relative sqlite path would split the store)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


@cache
def client_for(tracking_uri: str) -> MlflowClient:
    """One MLflow client per store and process (a client holds a store connection)."""
    return MlflowClient(tracking_uri)


def experiment_id_for(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


@dataclass(frozen=True)
class TrackedRun:
    """One MLflow run: the store it lives in and its id. Picklable, so Tune trial contexts
    carry it; Ray Train workers get the two strings instead (unpickling a TrackedRun imports
    this module, and so mlflow, on every rank)."""

    tracking_uri: str
    run_id: str

    @property
    def client(self) -> MlflowClient:
        return client_for(self.tracking_uri)

    @classmethod
    def start(cls, tracking_uri: str, experiment: str, run_name: str, params: dict[str, Any], config_yaml: str,
              tags: dict[str, str] | None = None, parent: TrackedRun | None = None) -> TrackedRun:
        """Create a run with its flattened params and config.yaml (nested under `parent`)."""
        client = client_for(tracking_uri)
        run_tags = dict(tags or {})
        if parent is not None:
            run_tags["mlflow.parentRunId"] = parent.run_id
        created = client.create_run(experiment_id_for(client, experiment), run_name=run_name, tags=run_tags)
        run = cls(tracking_uri, created.info.run_id)
        items = [Param(key, str(value)[:PARAM_VALUE_LIMIT]) for key, value in params.items()]
        for start in range(0, len(items), BATCH_LIMIT):
            client.log_batch(run.run_id, params=items[start: start + BATCH_LIMIT])
        if config_yaml:
            run.log_text(config_yaml, "config.yaml")
        return run

    def reopen(self) -> None:
        """Mark a resumed run as running again."""
        self.client.update_run(self.run_id, status="RUNNING")

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """All metrics at one step (finite or not), in batches of MLflow's size limit."""
        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        for start in range(0, len(items), BATCH_LIMIT):
            self.client.log_batch(self.run_id, metrics=items[start: start + BATCH_LIMIT])

    def tags(self) -> dict[str, str]:
        return dict(self.client.get_run(self.run_id).data.tags)

    def warnings(self) -> list[str]:
        """Warnings the run's workers recorded with RunLogger.warn, in order."""
        found = {int(k.rsplit(".", 1)[1]): v for k, v in self.tags().items() if k.startswith(f"{WARNING_TAG}.")}
        return [found[i] for i in sorted(found)]

    def latest_metrics(self) -> dict[str, float]:
        """The newest value of every metric of the run."""
        return dict(self.client.get_run(self.run_id).data.metrics)

    def metric_history(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric, by step."""
        history = sorted(self.client.get_metric_history(self.run_id, key), key=lambda m: m.step)
        return [m.step for m in history], [m.value for m in history]

    def last_metric_step(self, key: str) -> int:
        """The highest step logged for `key` in the run, or -1."""
        return max((m.step for m in self.client.get_metric_history(self.run_id, key)), default=-1)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        """A matplotlib figure as a PNG artifact."""
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_image(self, image: np.ndarray, key: str, step: int) -> None:
        """image: uint8 (H, W, C), logged under `key` with its step."""
        self.client.log_image(self.run_id, image, key=key, step=step)

    def child_runs(self) -> dict[str, dict[str, Any]]:
        """{trial id: {"run_id", "status", "tags"}} for every nested run of this (campaign) run."""
        return {run.data.tags.get(TRIAL_TAG, run.info.run_id): {"run_id": run.info.run_id, "status": run.info.status,
                                                                 "tags": dict(run.data.tags)}
                for run in self._search_children("", max_results=10_000)}

    def find_child(self, trial_id: str) -> TrackedRun | None:
        """The nested run of this campaign run tagged with a Tune trial id, if any."""
        runs = self._search_children(f" and tags.`{TRIAL_TAG}` = '{trial_id}'", max_results=1)
        return TrackedRun(self.tracking_uri, runs[0].info.run_id) if runs else None

    def _search_children(self, extra_filter: str, max_results: int):
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        return self.client.search_runs([experiment_id], max_results=max_results,
                                       filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'{extra_filter}")


class RunLogger:
    """Metrics, sample images, tags and warnings for one run, from rank 0 of the worker group.

    With an outbox (`zerosum.outbox`, in the run folder) every write is journaled on disk
    and sent by a background thread, so that training goes on while the server is away;
    without one, each write goes straight to the store (single-process Tune trials).
    A resumed run replays rounds after its last checkpoint; steps already logged (the
    outbox's journal knows them; without one, the store) are skipped so that none is logged twice.
    The last logged step is that of `loss/g`, the one key every method logs (a method
    without a critic, gmmn or pix2pix with L1 alone, has no `loss/d`).
    """

    def __init__(self, run: TrackedRun, step_key: str = "loss/g", outbox=None):
        self.run, self.outbox = run, outbox
        if outbox is not None:
            # The journal holds every write of this run's workers: no need to ask the server.
            self.last_logged_step = outbox.high_water.get(step_key, -1)
            self.warnings = len({k for k in outbox.tag_keys if k.startswith(f"{WARNING_TAG}.")})
        else:
            self.last_logged_step = run.last_metric_step(step_key)
            self.warnings = sum(key.startswith(WARNING_TAG) for key in run.tags())

    def log_metrics(self, metrics: dict[str, float], step: int, always: bool = False) -> None:
        """Metrics at `step`, unless that step was logged before (`always`: events such as
        a rollback, which may happen twice at one round)."""
        if step <= self.last_logged_step and not always:
            return
        if self.outbox is not None:
            self.outbox.put("metrics", {k: float(v) for k, v in metrics.items()}, step)
        else:
            self.run.log_metrics(metrics, step)

    def log_samples(self, image: np.ndarray, step: int) -> None:
        """image: uint8 (H, W, C) grid; logged under key 'samples' with its step."""
        if step <= self.last_logged_step:
            return
        if self.outbox is not None:
            self.outbox.put("image", {"key": "samples"}, step, image=image)
        else:
            self.run.log_image(image, key="samples", step=step)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.outbox is not None:
            self.outbox.put("tags", {k: str(v) for k, v in tags.items()})
        else:
            self.run.set_tags(tags)

    def warn(self, message: str) -> None:
        """Record a warning for the final summary (worker output does not reach the console)."""
        self.warnings += 1
        self.set_tags({f"{WARNING_TAG}.{self.warnings}": message[:PARAM_VALUE_LIMIT]})

    def skip_through(self, step: int) -> None:
        """Log nothing more at steps up to `step` (rounds trained again after a rollback)."""
        self.last_logged_step = max(self.last_logged_step, step)

    def close(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for the outbox to drain; -> entries left on disk.
        Sample grids the outbox could not keep become a warning in the run's summary."""
        if self.outbox is None:
            return 0
        if self.outbox.dropped_images:
            self.warn(self.outbox.dropped_note())
        return self.outbox.close(timeout_s)


def send_outbox_entry(run: TrackedRun, outbox_folder: Path, entry) -> None:
    """One zerosum.outbox entry to the run, with its original timestamp, so that a
    re-sent metric is the same row (which MLflow's store keeps once)."""
    if entry.kind == "metrics":
        metrics = [Metric(key, float(value), entry.time_ms, entry.step) for key, value in entry.data.items()]
        run.client.log_batch(run.run_id, metrics=metrics)
    elif entry.kind == "tags":
        run.client.log_batch(run.run_id, tags=[RunTag(key, str(value)) for key, value in entry.data.items()])
    elif entry.kind == "image":
        from PIL import Image

        image = np.asarray(Image.open(outbox_folder / "images" / f"{entry.seq}.png"))
        run.client.log_image(run.run_id, image, key=entry.data["key"], step=entry.step, timestamp=entry.time_ms)
    else:
        raise ValueError(f"unknown outbox entry kind {entry.kind!r}")


def outbox_sender(run: TrackedRun, run_dir: Path):
    """send(entry) for the outbox in `run_dir`, to `run`."""
    from functools import partial

    from zerosum.outbox import OUTBOX_FOLDER

    return partial(send_outbox_entry, run, run_dir / OUTBOX_FOLDER)


def log_loss_curves(run: TrackedRun) -> None:
    """One figure of loss/d and loss/g against round, logged as loss_curves.png."""
    from zerosum.pictures import pyplot

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    for key in ("loss/d", "loss/g"):
        axis.plot(*run.metric_history(key), label=key)
    axis.set_xlabel("round")
    axis.set_ylabel("loss")
    axis.legend()
    figure.tight_layout()
    run.log_figure(figure, "loss_curves.png")
    plt.close(figure)


@contextlib.contextmanager
def fluent_tracking_uri(uri: str):
    """MLflow's process-wide tracking URI set to `uri` for the body, then put back as it was.

    `log_model` only speaks through the fluent API. Setting its URI for good would point
    every later client's registry (and MLFLOW_TRACKING_URI, which mlflow.set_tracking_uri
    also writes) at this run's store, past the end of the call."""
    from mlflow.tracking._tracking_service import utils  # pinned mlflow: the explicitly set URI

    saved_uri, saved_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_uri)
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def log_generator(run: TrackedRun, model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...],
                  metadata: dict[str, Any], register_as: str | None, alias: str = "candidate",
                  input_names: tuple[str, ...] = ("z", "y")) -> str | None:
    """Log G as a pt2 model (no pickle), register it and point `alias` at the new version.

    MLflow reserves the alias 'latest' (`models:/NAME/latest` already means the newest
    version), so a freshly trained version gets the alias 'candidate'; Tune campaigns
    give their best version 'champion'.

    example_inputs: (z,) or (z, y) named by input_names, or a translator's (images,); the
    batch dimension is dynamic in the signature.
    Returns the model version, or None when not registered.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    names = input_names[: len(example_inputs)]
    inputs = Schema([TensorSpec(np.dtype(str(t.dtype).removeprefix("torch.")), (-1, *t.shape[1:]), name)
                     for name, t in zip(names, example_inputs)])
    with torch.no_grad():
        output = model(*example_inputs)
    outputs = Schema([TensorSpec(np.dtype("float32"), (-1, *output.shape[1:]))])
    example = example_inputs[0].numpy() if len(example_inputs) == 1 else tuple(t.numpy() for t in example_inputs)
    # MLflow prints "Successfully registered model ..." to stderr itself; zerosum's summary
    # says where the model is, so that line goes to the debug log instead.
    said = io.StringIO()
    with fluent_tracking_uri(run.tracking_uri), mlflow.start_run(run_id=run.run_id), contextlib.redirect_stderr(said):
        info = mlflow.pytorch.log_model(
            model, name="generator", input_example=example, signature=ModelSignature(inputs, outputs),
            metadata=metadata, registered_model_name=register_as, serialization_format="pt2",
            # A pt2 generator needs torch alone to load; naming it spares MLflow's inference of
            # the requirements, a subprocess that imports the model (seconds per logged model).
            pip_requirements=[f"torch=={torch.__version__}"],
            # MLflow's JSON serving check cannot express tensor inputs for the torch flavour;
            # tests load the logged model and call it instead.
            validate_serving_input=False,
        )
    log.debug("%s", said.getvalue().strip())
    version = info.registered_model_version
    if register_as and version is not None:
        run.client.set_registered_model_alias(register_as, alias, str(version))
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


def set_model_version_tags(tracking_uri: str, name: str, version: str, tags: dict[str, Any]) -> None:
    client = client_for(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
