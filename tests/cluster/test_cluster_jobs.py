"""`zerosum submit` and `zerosum jobs` against a real Ray head with token auth, plus a real MLflow server.

One head serves the whole module: the `local_cluster` fixture starts a Ray head
(token auth on) and an MLflow server on loopback with infra/local/start.sh, on free
ports, in a short /tmp folder, and always stops them with infra/local/stop.sh. Jobs
are submitted from a folder outside the repo, so nothing can lean on the repo root
being the working directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from zerosum.cluster.head import Head, Token
from zerosum.cluster.submit import build_runtime_env, shipped_package_dirs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]
DIGITS_JOB = REPO_ROOT / "jobs" / "digits-dcgan.yaml"
TINY = ["--set", "schedule.max_rounds=4", "--set", "eval.every_rounds=2", "--set", "checkpoint.every_rounds=2",
        "--set", "scaling.num_workers=1"]
LOCAL_SCRIPTS = REPO_ROOT / "infra" / "local"
# Variables that would point a client (or the head) somewhere other than this test's servers.
FOREIGN_ENV = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
               "RAY_AUTH_MODE", "RAY_TMPDIR", "MLFLOW_TRACKING_URI")
# `ray start` flags whose defaults are fixed ports: each gets a free one, so that other
# Ray instances on this machine (other test sessions) cannot collide with this head.
RAY_PORT_FLAGS = ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
                  "--runtime-env-agent-port", "--node-manager-port", "--object-manager-port",
                  "--ray-client-server-port")


@dataclass
class LocalCluster:
    address: str           # the Jobs API, http://127.0.0.1:PORT
    token_path: Path
    mlflow_uri: str
    state_dir: Path
    client_home: Path      # HOME for clients: no ~/.ray/auth_token there

    @property
    def token(self) -> str:
        return self.token_path.read_text().strip()

    def client_env(self, **extra: str) -> dict[str, str]:
        """Environment of a user who has the token in RAY_AUTH_TOKEN_PATH and MLflow set."""
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        env.update(HOME=str(self.client_home), RAY_AUTH_TOKEN_PATH=str(self.token_path),
                   MLFLOW_TRACKING_URI=self.mlflow_uri)
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free now (held open together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def require_jobs_api() -> None:
    """The Jobs API lives in the Ray dashboard, which needs ray[default]."""
    missing = [name for name in ("aiohttp_cors", "grpc") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(f"the Ray dashboard (Jobs API) needs ray[default] (missing: {', '.join(missing)}); "
                    f"install zerosum with ray[default,train,tune]")


def script(name: str, state_dir: Path, *args: str) -> list[str]:
    return ["bash", str(LOCAL_SCRIPTS / name), "--dir", str(state_dir), *args]


def start_servers(state_dir: Path, env: dict[str, str], ray_args: list[str]) -> None:
    """Ray head and MLflow side by side (each start.sh waits until its server answers)."""
    starts = [subprocess.Popen(script("start.sh", state_dir, "ray", "--", *ray_args), env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
              subprocess.Popen(script("start.sh", state_dir, "mlflow"), env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)]
    outputs = [process.communicate(timeout=240)[0] for process in starts]
    if any(process.returncode != 0 for process in starts):
        pytest.fail("infra/local/start.sh failed:\n" + "\n".join(outputs))


@pytest.fixture(scope="module")
def local_cluster():
    """Start Ray head + MLflow with infra/local/start.sh in a short /tmp folder; always stop them."""
    require_jobs_api()
    # Ray's socket paths must stay under 107 bytes: a short folder directly in /tmp.
    state_dir = Path(tempfile.mkdtemp(prefix="zsh-", dir="/tmp"))
    gcs, dashboard, mlflow_port, *others = free_ports(3 + len(RAY_PORT_FLAGS))
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env.update(ZEROSUM_RAY_PORT=str(gcs), ZEROSUM_DASHBOARD_PORT=str(dashboard),
               ZEROSUM_MLFLOW_PORT=str(mlflow_port), ZEROSUM_RAY_NUM_CPUS="4",
               ZEROSUM_BIN=str(Path(sys.executable).parent), RAY_TMPDIR=str(state_dir))
    port_args = [str(x) for pair in zip(RAY_PORT_FLAGS, others) for x in pair]
    try:
        start_servers(state_dir, env, port_args)
        home = state_dir / "home"
        home.mkdir()
        yield LocalCluster(address=f"http://127.0.0.1:{dashboard}", token_path=state_dir / "auth_token",
                           mlflow_uri=f"http://127.0.0.1:{mlflow_port}", state_dir=state_dir, client_home=home)
    finally:
        stopped = subprocess.run(script("stop.sh", state_dir, "all"), env=env, capture_output=True, text=True,
                                 timeout=120)
        shutil.rmtree(state_dir, ignore_errors=True)
        assert stopped.returncode == 0, f"infra/local/stop.sh failed:\n{stopped.stdout}\n{stopped.stderr}"


# --------------------------------------------------------------------------- helpers


def zerosum(cluster, *args: str, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`zerosum ARGS` as a user with the cluster's token and MLflow in their environment."""
    return subprocess.run([sys.executable, "-m", "zerosum.cli", *args], cwd=cwd, env=cluster.client_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def head(cluster) -> Head:
    return Head(cluster.address, Token(cluster.token, "test"))


def submission_ids(cluster) -> set[str]:
    return {job.submission_id for job in head(cluster).client.list_jobs() if job.submission_id}


def submitted_id(result: subprocess.CompletedProcess) -> str:
    match = re.search(r"^submitted (\S+) to ", result.stdout, re.MULTILINE)
    assert match, f"no job id in:\n{result.stdout}\n{result.stderr}"
    return match.group(1)


def wait_for_status(cluster, job_id: str, wanted: str, timeout_s: float = 180) -> str:
    deadline = time.monotonic() + timeout_s
    status = head(cluster).status(job_id)
    while status != wanted and time.monotonic() < deadline:
        time.sleep(1)
        status = head(cluster).status(job_id)
    return status


def test_spec_error_is_caught_before_anything_is_sent(local_cluster, tmp_path):
    before = submission_ids(local_cluster)
    result = zerosum(local_cluster, "submit", str(DIGITS_JOB), "--set", "schedule.max_rounds=-1",
                     "--address", local_cluster.address, cwd=tmp_path)
    assert result.returncode == 2
    assert "schedule.max_rounds" in result.stderr and "Traceback" not in result.stderr
    # Validation comes before any contact: with no head at all, the spec error is still what is said.
    dead = zerosum(local_cluster, "submit", str(DIGITS_JOB), "--set", "schedule.max_rounds=-1",
                   "--address", "http://127.0.0.1:9", cwd=tmp_path)
    assert dead.returncode == 2 and "schedule.max_rounds" in dead.stderr
    assert submission_ids(local_cluster) == before


def test_wrong_missing_token_and_dead_head_are_said_plainly(local_cluster, tmp_path):
    before = submission_ids(local_cluster)
    wrong = zerosum(local_cluster, "submit", str(DIGITS_JOB), *TINY, "--address", local_cluster.address,
                    cwd=tmp_path, RAY_AUTH_TOKEN="not-the-cluster-token")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "refused the auth token (from RAY_AUTH_TOKEN)" in wrong.stderr
    missing = zerosum(local_cluster, "jobs", "list", "--address", local_cluster.address, cwd=tmp_path,
                      RAY_AUTH_TOKEN_PATH=None)
    assert missing.returncode == 2 and "requires an auth token and none was sent" in missing.stderr
    dead = zerosum(local_cluster, "jobs", "list", "--address", "http://127.0.0.1:9", cwd=tmp_path)
    assert dead.returncode == 2 and "cannot reach the Ray head at http://127.0.0.1:9" in dead.stderr
    assert submission_ids(local_cluster) == before


def test_submit_wait_succeeds_and_the_run_is_in_mlflow(local_cluster, tmp_path):
    from mlflow.tracking import MlflowClient

    result = zerosum(local_cluster, "submit", str(DIGITS_JOB), *TINY, "--address", local_cluster.address,
                     "--wait", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    job_id = submitted_id(result)
    assert f"job {job_id}: SUCCEEDED" in result.stdout

    info = head(local_cluster).client.get_job_info(job_id)
    shipped = info.runtime_env
    assert len(shipped["py_modules"]) == len(shipped_package_dirs()) >= 2  # zerosum and evals
    assert all(uri.startswith("gcs://") for uri in shipped["py_modules"])
    assert shipped["working_dir"].startswith("gcs://")
    assert shipped["env_vars"]["MLFLOW_TRACKING_URI"] == local_cluster.mlflow_uri
    assert info.entrypoint.startswith("python -m zerosum.cli run digits-dcgan.yaml --set schedule.max_rounds=4")
    assert str(REPO_ROOT) not in info.entrypoint

    logs = zerosum(local_cluster, "jobs", "logs", job_id, "--address", local_cluster.address, cwd=tmp_path)
    assert logs.returncode == 0 and "model:" in logs.stdout
    run_id = re.search(r"mlflow run:\s+(\w+)", logs.stdout).group(1)
    run_folder = re.search(r"run folder:\s+(\S+)", logs.stdout).group(1)
    assert run_folder.startswith(str(local_cluster.state_dir)) and "working_dir_files" in run_folder

    client = MlflowClient(local_cluster.mlflow_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "digits-dcgan"
    assert client.search_model_versions("name='digits-dcgan'")

    status = zerosum(local_cluster, "jobs", "status", job_id, "--address", local_cluster.address, cwd=tmp_path)
    assert "status:     SUCCEEDED" in status.stdout
    listing = zerosum(local_cluster, "jobs", "list", cwd=tmp_path, RAY_ADDRESS=local_cluster.address)
    assert job_id in listing.stdout and "SUCCEEDED" in listing.stdout
    tail = zerosum(local_cluster, "jobs", "logs", job_id, "--follow", "--address", local_cluster.address,
                   cwd=tmp_path, timeout=60)
    assert tail.returncode == 0 and f"mlflow run:   {run_id}" in tail.stdout


@pytest.mark.parametrize("how", ["--follow", "--wait"])
def test_a_data_path_missing_on_the_cluster_fails_the_job_in_one_line(local_cluster, tmp_path, how):
    """Data paths are checked on the cluster, not here: a missing one fails the job at once,
    and --follow (in the logs) and --wait both end with the job's own error line, exit 2."""
    result = zerosum(local_cluster, "submit", str(DIGITS_JOB), *TINY, "--set", "data.name=mnist",
                     "--set", "data.root=/nonexistent/mnist", "--address", local_cluster.address, how,
                     cwd=tmp_path)
    job_id = submitted_id(result)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"job {job_id}: FAILED" in result.stdout
    cluster_line = ("error: digits-dcgan.yaml: data: data.root '/nonexistent/mnist' is not a directory; point it "
                    "at the folder holding the dataset files, or set data.download: true where the internet is reachable")
    assert result.stderr.splitlines()[-1] == cluster_line  # the cluster's own error, not a bare FAILED
    assert (cluster_line in result.stdout) == (how == "--follow")  # --follow streamed the logs
    assert "Traceback" not in result.stdout + result.stderr


def test_a_job_that_can_never_fit_is_refused_before_it_is_sent(local_cluster, tmp_path):
    """The head has 4 CPUs and no autoscaler: 4 workers of 1 CPU and the driver's 1 never fit."""
    from zerosum.cluster.head import cluster_resources

    resources = cluster_resources(head(local_cluster).cluster_status())  # the real payload parses
    assert resources.total == {"CPU": 4.0, "GPU": 0.0} and resources.fixed
    before = submission_ids(local_cluster)
    result = zerosum(local_cluster, "submit", str(DIGITS_JOB), *TINY, "--set", "scaling.num_workers=4",
                     "--address", local_cluster.address, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        f"error: {DIGITS_JOB}: refusing to submit: the Ray cluster at {local_cluster.address} has 4 CPU and 0 GPU "
        f"in all, and no autoscaler to add nodes; the job needs 5 CPU at once, 4 worker(s) (scaling.num_workers) "
        f"x 1 CPU (scaling.cpus_per_worker) + 1 for the driver (--num-cpus)")
    assert submission_ids(local_cluster) == before


def read_lines(stream, into: list[str]) -> threading.Thread:
    """Collect a pipe's lines in a thread (a process that waits must not block the test)."""
    thread = threading.Thread(target=lambda: into.extend(iter(stream.readline, "")), daemon=True)
    thread.start()
    return thread


def test_wait_says_when_the_job_waits_for_resources(local_cluster, tmp_path):
    """A job that fits the cluster's totals while another holds every CPU: its driver cannot
    start, and --wait says so within a minute, with Ray's pending demand."""
    client = head(local_cluster).client
    holder = client.submit_job(entrypoint="sleep 300", entrypoint_num_cpus=4)
    waiter, out, err, readers = None, [], [], []
    try:
        assert wait_for_status(local_cluster, holder, "RUNNING", timeout_s=60) == "RUNNING"
        waiter = subprocess.Popen([sys.executable, "-m", "zerosum.cli", "submit", str(DIGITS_JOB), *TINY,
                                   "--address", local_cluster.address, "--wait"], cwd=tmp_path,
                                  env=local_cluster.client_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        readers = [read_lines(waiter.stdout, out), read_lines(waiter.stderr, err)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(line.startswith("waiting for resources") for line in err):
            time.sleep(0.5)
        said = [line for line in err if line.startswith("waiting for resources")]
        assert said, "".join(out + err)
        assert "Ray's pending demand for" in said[0] and "{CPU: 1} x 1 (tasks/actors)" in said[0]
        assert "in use: 4/4 CPU" in said[0]
        assert "status: PENDING\n" in out
    finally:
        # The waiting client is done with (the job keeps its place); stop the waiter, then the holder.
        if waiter is not None:
            waiter.kill()
            waiter.wait(timeout=30)
        for reader in readers:
            reader.join(timeout=10)
        job_id = next((match.group(1) for match in map(re.compile(r"^submitted (\S+) to ").match, out) if match),
                      None)
        for job in (job_id, holder):
            if job:
                client.stop_job(job)
    assert job_id and wait_for_status(local_cluster, job_id, "STOPPED", timeout_s=60) == "STOPPED"


def test_the_shipped_packages_are_what_runs_on_the_cluster(local_cluster, tmp_path):
    """The local head's python has zerosum installed editable; the job must import the shipped copy."""
    (tmp_path / "stage").mkdir()
    probe = "import json, platform, zerosum, evals; print(json.dumps([zerosum.__file__, evals.__file__, platform.system()]))"
    job_id = head(local_cluster).client.submit_job(
        entrypoint=f"python -c '{probe}'", runtime_env=build_runtime_env(tmp_path / "stage", {}))
    assert wait_for_status(local_cluster, job_id, "SUCCEEDED") == "SUCCEEDED"
    line = [row for row in head(local_cluster).client.get_job_logs(job_id).splitlines() if row.startswith("[")][-1]
    zerosum_file, evals_file, system = json.loads(line)
    for path in (zerosum_file, evals_file):
        assert path.startswith(str(local_cluster.state_dir)) and "py_modules_files" in path
    assert system == "Linux"  # the stdlib `platform`, not the repo's platform/ folder


def test_rays_own_job_submit_runs_a_zerosum_entrypoint(local_cluster, tmp_path):
    """`ray job submit` (Ray's CLI and token handling) runs `zerosum run` with the same shipping.

    `--dry-run` keeps it cheap: the training path through this head is covered by the
    `zerosum submit --wait` test; here the head, the token and the entrypoint are what count.
    """
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "digits-dcgan.yaml").write_bytes(DIGITS_JOB.read_bytes())
    runtime_env = {"working_dir": str(stage), "py_modules": [str(p) for p in shipped_package_dirs()],
                   "env_vars": {"MLFLOW_TRACKING_URI": local_cluster.mlflow_uri}}
    command = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", local_cluster.address,
               "--runtime-env-json", json.dumps(runtime_env), "--", "python", "-m", "zerosum.cli", "run",
               "digits-dcgan.yaml", *TINY, "--dry-run"]
    # Ray's client sends the token only when RAY_AUTH_MODE=token is set on the client side too.
    result = subprocess.run(command, cwd=tmp_path, env=local_cluster.client_env(RAY_AUTH_MODE="token"),
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "succeeded" in output and "max_rounds: 4" in output


def test_jobs_stop_stops_a_running_job(local_cluster, tmp_path):
    result = zerosum(local_cluster, "submit", str(DIGITS_JOB), "--set", "schedule.max_rounds=100000",
                     "--set", "scaling.num_workers=1", "--address", local_cluster.address, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job_id = submitted_id(result)
    assert wait_for_status(local_cluster, job_id, "RUNNING") == "RUNNING"
    follower = subprocess.Popen([sys.executable, "-m", "zerosum.cli", "jobs", "logs", job_id, "--follow",
                                 "--address", local_cluster.address], cwd=tmp_path,
                                env=local_cluster.client_env(), stdout=subprocess.PIPE, text=True)
    try:
        stopped = zerosum(local_cluster, "jobs", "stop", job_id, "--address", local_cluster.address,
                          cwd=tmp_path, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert f"job {job_id}: STOPPED" in stopped.stdout
        assert head(local_cluster).status(job_id) == "STOPPED"
        # A live tail ends by itself once the job has ended.
        out, _ = follower.communicate(timeout=60)
        assert follower.returncode == 0 and f"Running entrypoint for job {job_id}" in out
    finally:
        if follower.poll() is None:
            follower.kill()


# --------------------------------------------------------------------------- what listens where


def session_pids(leader_pid: int) -> set[int]:
    """Every process in the session that `setsid` gave a server started by start.sh."""
    listed = subprocess.run(["ps", "-o", "pid=", "-s", str(leader_pid)], capture_output=True, text=True, check=True)
    return {int(word) for word in listed.stdout.split()}


def listeners(pids: set[int]) -> list[tuple[str, int, str]]:
    """(local address, port, process name) of each listening TCP socket of `pids`, from `ss`."""
    table = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in table.splitlines():
        fields = line.split()
        local, users = fields[3], " ".join(fields[5:])
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", users)}
        if owners & pids:
            address, port = local.rsplit(":", 1)
            found.append((address.strip("[]"), int(port), re.search(r'\(\("([^"]+)"', users).group(1)))
    return found


def test_the_local_servers_bind_their_endpoints_to_loopback_only(local_cluster):
    """Read back with `ss` what start.sh's servers listen on. MLflow, the dashboard / Jobs
    API (the HTTP endpoints a user talks to) are on 127.0.0.1 only. Ray 2.60's own gRPC
    servers (GCS, raylet, object manager, agents, Ray Client) have no bind option and
    listen on every interface or the node's address; token auth guards them (start.sh
    says so), and this test names them."""
    state = local_cluster.state_dir
    mlflow = listeners(session_pids(int((state / "mlflow.pid").read_text())))
    ray = listeners(session_pids(int((state / "ray.pid").read_text())))
    mlflow_port = int(local_cluster.mlflow_uri.rsplit(":", 1)[1])
    dashboard_port = int(local_cluster.address.rsplit(":", 1)[1])
    assert mlflow and {port for _, port, _ in mlflow} == {mlflow_port}
    assert {address for address, _, _ in mlflow} == {"127.0.0.1"}
    dashboard = [address for address, port, _ in ray if port == dashboard_port]
    assert dashboard == ["127.0.0.1"]
    exposed = sorted({(port, name) for address, port, name in ray if not address.startswith("127.")})
    # Whatever else listens off loopback is Ray's own processes, never an HTTP endpoint of ours.
    assert dashboard_port not in {port for port, _ in exposed}
    assert all(name in ("gcs_server", "raylet", "python") or name.startswith("ray::") for _, name in exposed), exposed
