"""The Ray runtime a driver uses: connect or start Ray, and keep its logs out of the way.

`init_ray` connects to `RAY_ADDRESS` when it is set, else to the local head that
`zerosum up` keeps running, if there is one, else starts a local instance (token auth
stays on, as Ray 2.60 sets it up). By default workers' output is not
streamed to the console (`log_to_driver=False`) and Ray's own loggers write to
`<folder>/ray.log`; when the run ends, `collect_ray_logs` appends the workers'
stdout and stderr from a local Ray session to the same file. `zerosum -v` shows
all of it live instead. What matters from the workers (warnings, the stop reason)
reaches the console through the run's MLflow tags, in the final summary.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zerosum.errors import ConfigError

RAY_LOG = "ray.log"
RAY_LOGGERS = ("ray", "ray.train", "ray.tune", "ray.data")


# Ray counts resources in ten-thousandths of a unit (a request of 0.33333 CPU is 0.3333).
RAY_RESOURCE_UNITS = 10_000


def ray_units(amount: float) -> int:
    """`amount` of a resource (CPUs, GPUs) in Ray's fixed-point units: sums and quotients of
    these are exact, as Ray's own accounting is, where floats land a hair off."""
    return round(amount * RAY_RESOURCE_UNITS)


def refuse_on_cluster(problem_on: Callable[[dict[str, float]], str | None], run: Any) -> None:
    """After init_ray, before anything trains: a ConfigError with what `problem_on` finds in
    the cluster's resources (`ray.cluster_resources()`), if anything, once `run` (a TrackedRun:
    the run's, or a campaign's parent) has ended FAILED, so that no refused run stays RUNNING."""
    import ray

    problem = problem_on(ray.cluster_resources())
    if problem:
        run.end("FAILED")
        raise ConfigError(problem)


def init_ray(log_dir: Path | None = None, verbose: bool = False, with_dashboard: bool = False) -> str | None:
    """Connect to RAY_ADDRESS if set, else to the `zerosum up` head, else start a local
    Ray instance. -> a note for the run's summary when it attached to the `zerosum up` head.

    log_dir: where `ray.log` goes unless `verbose`.
    with_dashboard: campaigns of Ray Train trials need it: its State API is how Ray Train
    frees a finished run's placement group, without which the next trial's workers starve.
    """
    import ray

    if ray.is_initialized():
        return None
    handler = None if verbose or log_dir is None else ray_log_handler(Path(log_dir) / RAY_LOG)
    if handler is not None:
        # Before init: Ray's token-auth notice is logged while it starts.
        route_ray_loggers(handler)
    note = attach_to_local_head()
    # Before init: a local Ray's raylet, and so every worker, inherits this environment.
    os.environ.update(ray_train_settings())
    # The workers of the `zerosum up` head have its environment, not this shell's. (Not for
    # a RAY_ADDRESS of the user's or Ray's: a submitted job's runtime env is set by
    # `zerosum submit`, and Ray refuses a driver's that names the same variables.)
    runtime_env = {"env_vars": forwarded_env()} if note else None
    ray.init(include_dashboard=with_dashboard, configure_logging=True, runtime_env=runtime_env,
             logging_level=logging.INFO if verbose else logging.WARNING, log_to_driver=verbose)
    if handler is not None:
        # ray.init installs its own console handlers; put ours back in their place.
        route_ray_loggers(handler)
        route_cluster_errors()
    return note


# Ray Train V2's controller takes a worker's `ray.train.report` off its queue (which holds
# one) only when it polls the worker group, every 2 s by default. A run that reports every
# log interval waits there for most of its time: py-spy on a 2-CPU digits-dcgan run found
# two thirds of a worker's time inside `report`, and polling every 0.2 s took its rounds
# from 36 s to 22 s. A poll is one small actor call per worker, so 5 a second cost nothing.
# Ray hands this variable from the driver to the controller (ENV_VARS_TO_PROPAGATE).
RAY_TRAIN_DEFAULTS = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}


def ray_train_settings(environ: dict[str, str] | None = None) -> dict[str, str]:
    """zerosum's Ray Train settings, each the user's own value where they set one."""
    environ = os.environ if environ is None else environ
    return {name: environ.get(name, value) for name, value in RAY_TRAIN_DEFAULTS.items()}


# The driver's variables its workers need too: zerosum's own (the cache folder, ...),
# MLflow's (the tracking server's credentials and request settings, for rank 0) and the
# Ray Train settings above (a Tune trial is the driver of its own Ray Train run).
FORWARDED_ENV_PREFIXES = ("ZEROSUM_", "MLFLOW_")


def forwarded_env() -> dict[str, str]:
    """The variables of this process that a run's workers on an existing head must see
    (init_ray has put the Ray Train settings in this process's environment by then)."""
    return {k: v for k, v in os.environ.items()
            if k.startswith(FORWARDED_ENV_PREFIXES) or k in RAY_TRAIN_DEFAULTS}


def attach_to_local_head() -> str | None:
    """Point this process's Ray client at the `zerosum up` head, unless RAY_ADDRESS says
    where to go. -> what to tell the user (the run's workers then live in that head), or None."""
    if os.environ.get("RAY_ADDRESS"):
        return None
    from zerosum.cluster.local_head import read_head

    head = read_head()
    if head is None:
        return None
    os.environ.update(head.client_env())
    # Ray caches RAY_AUTH_MODE in its config when it is imported; refresh it, as Ray itself
    # does when it turns token auth on (ray._private.authentication, _enable_token_auth).
    from ray._raylet import Config

    Config.initialize("")
    return f"ray: ran on the head of `zerosum up` at {head.address} (`zerosum down` stops it)"


def ray_log_handler(path: Path) -> logging.Handler:
    """A file handler for `path` (its folder made), in Ray's own line format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    return handler


def route_ray_loggers(handler: logging.Handler) -> None:
    """Send Ray's Python loggers (driver and Train/Tune controllers in this process) to `handler` only."""
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False


def route_cluster_errors() -> None:
    """Send the cluster's error messages to the "ray" logger (ray.log) instead of stdout.

    A driver's error listener thread prints what the cluster publishes, such as a raylet
    that died or a node marked dead, straight to stdout through
    `ray._private.worker.print_to_stdstream`, whatever `log_to_driver` says, and Ray has
    no switch for it. A lost node would otherwise fill the console with raylet state
    dumps. zerosum says what happened in one line (the restart note in the run's summary)."""
    from ray._private import worker

    printer = worker.print_to_stdstream
    if getattr(printer, "zerosum_routed", False):
        return
    logger = logging.getLogger("ray")

    def to_log(data: dict, ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            printer(data, ignore_prefix)
            return
        for line in data.get("lines", []):
            logger.warning("(raylet) %s", line)

    to_log.zerosum_routed = True
    worker.print_to_stdstream = to_log


def collect_ray_logs(log_dir: Path) -> Path | None:
    """Append this job's workers' stdout/stderr to `<log_dir>/ray.log`, from the Ray
    session's logs on this machine: a local Ray this process started, or the `zerosum up`
    head it attached to, which holds every run's logs (hence only this job's files,
    `worker-<worker id>-<job id>-<pid>.out|err`). A remote cluster's logs stay on its
    nodes, where `ray logs` and the dashboard show them. -> the file, or None."""
    import ray
    from ray._private import worker

    node = worker._global_node
    if node is None or not hasattr(node, "get_logs_dir_path"):
        return None
    logs = Path(node.get_logs_dir_path())
    if not logs.is_dir():
        return None
    # A session this process started is all this job's; in a shared one, a worker Ray
    # started before any job (job id ffffffff) may have served another run.
    job = "*" if getattr(node, "head", False) else ray.get_runtime_context().get_job_id()
    target = Path(log_dir) / RAY_LOG
    with open(target, "a") as out:
        for suffix in ("out", "err"):
            for path in sorted(logs.glob(f"worker-*-{job}-*.{suffix}")):
                text = path.read_text(errors="replace")
                if text.strip():
                    out.write(f"\n===== {path.name}\n{text}")
    return target
