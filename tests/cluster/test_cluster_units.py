"""Submission logic without a cluster: token and address resolution, what is shipped, error messages."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import pytest

from zerosum import cli
from zerosum.cli import jobs as jobs_cli
from zerosum.cli import submit as submit_cli
from zerosum.cluster import head, submit
from zerosum.cluster.head import Token, explain_failure, resolve_address, resolve_token
from zerosum.errors import ZerosumError
from zerosum.runtime import RAY_TRAIN_DEFAULTS, ray_train_settings
from zerosum_testing import JOBS

REPO_ROOT = Path(__file__).resolve().parents[2]
DIGITS_JOB = REPO_ROOT / "jobs" / "digits-dcgan.yaml"


# --------------------------------------------------------------------------- token and address


def test_token_precedence_follows_ray(tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    path_file = tmp_path / "token"
    path_file.write_text("from-path\n")
    env = {"RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(path_file)}
    assert resolve_token(env, home=tmp_path) == Token("from-env", "RAY_AUTH_TOKEN")
    assert resolve_token({"RAY_AUTH_TOKEN_PATH": str(path_file)}, home=tmp_path).value == "from-path"
    assert resolve_token({}, home=tmp_path).value == "from-home"
    assert resolve_token({}, home=tmp_path / "nobody").value is None


def test_unreadable_token_path_is_an_error(tmp_path):
    with pytest.raises(ZerosumError, match="RAY_AUTH_TOKEN_PATH=.*missing or empty"):
        resolve_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "absent")}, home=tmp_path)


def test_address_flag_wins_then_ray_env_vars():
    env = {"RAY_ADDRESS": "http://a:8265", "RAY_API_SERVER_ADDRESS": "http://b:8265"}
    assert resolve_address("http://c:8265/", env) == "http://c:8265"
    assert resolve_address(None, env) == "http://b:8265"
    assert resolve_address(None, {"RAY_ADDRESS": "head:8265"}) == "http://head:8265"
    with pytest.raises(ZerosumError, match="pass --address"):
        resolve_address(None, {})


def test_explicit_address_is_not_overridden_by_ray_address(monkeypatch):
    """Ray's client lets RAY_ADDRESS override its argument; zerosum hides it while connecting."""
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:1")
    with head._without_address_env():
        assert "RAY_ADDRESS" not in os.environ
    assert os.environ["RAY_ADDRESS"] == "http://127.0.0.1:1"


def test_auth_header_is_rays_bearer_format():
    assert head.auth_headers(Token("abc", "x")) == {"Authorization": "Bearer abc"}
    assert head.auth_headers(Token(None, "none found")) == {}


# --------------------------------------------------------------------------- messages


def test_failures_become_plain_messages():
    from ray.exceptions import AuthenticationError

    address = "http://head:8265"
    refused = explain_failure(AuthenticationError("Authentication failed: Forbidden"), address, Token("t", "RAY_AUTH_TOKEN"))
    assert "refused the auth token (from RAY_AUTH_TOKEN)" in refused
    missing = explain_failure(AuthenticationError("Authentication required: x"), address, Token(None, "none found"))
    assert "requires an auth token and none was sent" in missing
    down = explain_failure(ConnectionError("Failed to connect to Ray at address: x."), address, Token(None, ""))
    assert down.startswith("cannot reach the Ray head at http://head:8265") and "is it running?" in down
    unknown = explain_failure(RuntimeError("Request failed with status code 404: Job x does not exist."),
                              address, Token(None, ""), job_id="x")
    assert unknown.startswith("no job 'x' on the Ray head")


def test_dead_head_is_reported_without_a_traceback(capsys):
    code = cli.main(["jobs", "list", "--address", "http://127.0.0.1:9"])
    assert code == 2
    assert "cannot reach the Ray head at http://127.0.0.1:9" in capsys.readouterr().err


# --------------------------------------------------------------------------- what is sent


def test_spec_errors_stop_submission_before_any_contact(monkeypatch, capsys):
    def no_contact(*args, **kwargs):
        raise AssertionError("the head was contacted for an invalid spec")

    monkeypatch.setattr(head, "Head", no_contact)
    code = cli.main(["submit", str(DIGITS_JOB), "--set", "optim.d.lr=-1", "--address", "http://127.0.0.1:9"])
    assert code == 2
    assert "optim.d.lr" in capsys.readouterr().err


def test_dry_run_shows_the_submission_and_sends_nothing(monkeypatch, capsys):
    monkeypatch.setattr(head, "Head", lambda *a, **k: pytest.fail("a dry run contacted the head"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    code = cli.main(["submit", str(DIGITS_JOB), "--set", "schedule.max_rounds=4", "--dry-run",
                     "--address", "http://10.0.0.5:8265"])
    out = capsys.readouterr().out
    assert code == 0
    assert "entrypoint:  python -m zerosum.cli run digits-dcgan.yaml --set schedule.max_rounds=4" in out
    assert "working_dir: digits-dcgan.yaml\n" in out and "MLFLOW_TRACKING_URI" in out
    assert "http://mlflow.internal" not in out  # values (possibly secrets) are not printed


def test_shipped_code_is_the_package_folders_never_the_repo_root(tmp_path):
    env = submit.build_runtime_env(tmp_path, {"A": "1"})
    shipped = [Path(p) for p in env["py_modules"]]
    assert [p.name for p in shipped][:1] == ["zerosum"]
    assert all((p / "__init__.py").is_file() and p != REPO_ROOT and p.name != "platform" for p in shipped)
    assert env["working_dir"] == str(tmp_path) and env["env_vars"] == {"A": "1"}
    assert "__pycache__/" in env["excludes"]


def test_working_dir_holds_only_the_spec_and_yaml_it_names(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "base.yaml").write_text("name: base\n")
    (specs / "other.txt").write_text("not shipped\n")
    (specs / "camp.yaml").write_text("name: c\ncampaign:\n  base: base.yaml\n  note: ../outside.yaml\n")
    (tmp_path / "outside.yaml").write_text("x: 1\n")
    staging = tmp_path / "staging"
    staging.mkdir()
    assert submit.stage_working_dir(specs / "camp.yaml", staging) == "camp.yaml"
    assert sorted(p.name for p in staging.iterdir()) == ["base.yaml", "camp.yaml"]


def test_jobs_run_run_and_campaigns_run_tune(tmp_path, monkeypatch):
    assert submit.validate_spec(DIGITS_JOB, ["schedule.max_rounds=4"]) == ("run", "digits-dcgan")
    assert submit.spec_command({"campaign": {}}) == "tune" and submit.spec_command({"name": "x"}) == "run"
    campaign = tmp_path / "camp.yaml"
    campaign.write_text("campaign:\n  name: ring-hunt\n  base: digits-dcgan.yaml\n")
    calls = []

    class Loaded:
        name = "ring-hunt"

    def fake_load_campaign(path, overrides=None, check_paths=True):
        calls.append((Path(path), overrides, check_paths))
        return Loaded()

    monkeypatch.setattr("zerosum.tune.campaign.load_campaign", fake_load_campaign)
    assert submit.validate_spec(campaign, ["campaign.num_samples=2"]) == ("tune", "ring-hunt")
    # Data roots name cluster folders: the campaign is validated without checking them.
    assert calls == [(campaign, ["campaign.num_samples=2"], False)]


def test_the_shipped_campaign_validates_for_submission(tmp_path):
    spec = REPO_ROOT / "jobs" / "tune-ring8-dg-ratio.yaml"
    command, _ = submit.validate_spec(spec, [])
    staged = submit.stage_working_dir(spec, tmp_path)
    assert command == "tune" and (tmp_path / staged).is_file()
    assert submit.validate_spec(tmp_path / staged, [])[0] == "tune"  # the staged folder is self-contained


def test_entrypoint_runs_zerosum_from_the_shipped_package_with_overrides():
    entry = submit.build_entrypoint("run", "quick start.yaml", ["a.b=1", "tracking.experiment=my exp"])
    assert shlex.split(entry) == ["python", "-m", "zerosum.cli", "run", "quick start.yaml",
                                  "--set", "a.b=1", "--set", "tracking.experiment=my exp"]


def test_env_vars_pass_the_tracking_uri_and_named_variables_only():
    environ = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "WANDB": "x", "SECRET": "s"}
    uri = submit.job_tracking_uri(None, environ)
    assert submit.job_env_vars(["WANDB"], uri, environ) == {
        "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": "http://mlflow:5000", "WANDB": "x",
        **RAY_TRAIN_DEFAULTS}
    assert submit.job_tracking_uri("http://other:5000", environ) == "http://other:5000"
    assert submit.job_tracking_uri("cluster", environ) is None
    assert "MLFLOW_TRACKING_URI" not in submit.job_env_vars([], None, environ)
    with pytest.raises(ZerosumError, match="--env NOPE: it is not set"):
        submit.job_env_vars(["NOPE"], uri, environ)
    with pytest.raises(ZerosumError, match="expected an environment variable name"):
        submit.job_env_vars(["A=B"], uri, environ)


def test_ray_train_settings_default_to_fast_polling_and_keep_the_users_value():
    assert ray_train_settings({}) == {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}
    mine = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "5"}
    assert ray_train_settings(mine) == mine
    assert submit.job_env_vars([], None, mine)["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "5"


def test_tracking_notes_warn_when_runs_would_be_lost():
    head = "http://10.0.0.5:8265"
    assert "not set here" in submit.tracking_notes(None, None, head)[0]
    assert "local path" in submit.tracking_notes("sqlite:///x.db", None, head)[0]
    assert "loopback" in submit.tracking_notes("http://127.0.0.1:5000", None, head)[0]
    assert submit.tracking_notes("http://127.0.0.1:5000", None, "http://127.0.0.1:8265") == []
    assert submit.tracking_notes("https://mlflow.internal", None, head) == []
    assert submit.tracking_notes(None, "cluster", head) == []


def test_submission_ids_are_readable_and_unique():
    first, second = submit.new_submission_id("ring8 dg/ratio"), submit.new_submission_id("ring8 dg/ratio")
    assert first.startswith("zerosum-ring8-dg-ratio-") and first != second


def test_commands_are_registered_with_the_cli():
    parser = cli.build_parser()
    args = parser.parse_args(["submit", "spec.yaml", "--set", "a=1", "--follow", "--num-gpus", "1"])
    assert args.handler is submit_cli.cmd_submit and args.overrides == ["a=1"] and args.num_gpus == 1
    assert parser.parse_args(["jobs", "logs", "j1", "--follow"]).handler is jobs_cli.cmd_jobs_logs
    assert parser.parse_args(["jobs", "stop", "j1"]).handler is jobs_cli.cmd_jobs_stop


@pytest.mark.parametrize(("address", "refused"), [
    ("http://10.0.0.5:8265", True),
    ("http://head.example.org:8265", True),
    ("https://head.example.org:8265", False),  # TLS protects the header
    ("http://127.0.0.1:8265", False),          # a tunnel's local end
    ("http://localhost:8265", False),
    ("http://[::1]:8265", False),
])
def test_the_token_never_travels_over_plain_http_off_this_machine(address, refused):
    token = Token("secret", "test")
    problem = head.token_transport_problem(address, token)
    assert (problem is not None) == refused
    if refused:
        assert "kubectl -n zerosum port-forward svc/zerosum-head-svc 8265:8265" in problem
        assert "ray dashboard" in problem and "--insecure" in problem
        assert "secret" not in problem
    # --insecure is the user's choice; with no token there is nothing to leak.
    assert head.token_transport_problem(address, token, insecure=True) is None
    assert head.token_transport_problem(address, Token(None, "none found")) is None


def test_submit_and_jobs_refuse_a_plain_http_head_unless_insecure(monkeypatch, capsys):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    for argv in (["submit", str(JOBS / "ring8-mlp.yaml"), "--tracking-uri", "cluster", "--address", "http://10.0.0.5:8265"],
                 ["jobs", "list", "--address", "http://10.0.0.5:8265"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: refusing to send the Ray auth token over plain http to http://10.0.0.5:8265")
        assert err.count("\n") == 1 and "Traceback" not in err
    # With --insecure the client is built with the token in its header.
    sent = {}

    class Client:
        def __init__(self, address, headers):
            sent.update(address=address, headers=headers)

        def list_jobs(self):
            return []

    monkeypatch.setattr(head, "_client_class", lambda: Client)
    assert cli.main(["jobs", "list", "--insecure", "--address", "http://10.0.0.5:8265"]) == 0
    assert sent == {"address": "http://10.0.0.5:8265", "headers": {"Authorization": "Bearer secret"}}


# --------------------------------------------------------------------------- the cluster's resources

# `/api/cluster_status` of a real `ray start --head --num-cpus=2` (Ray 2.60, its read-only
# monitor), trimmed to the fields zerosum reads. One job held both CPUs; another waited with a
# task of 1 CPU and a placement group of 2 x 1 CPU; a third job's driver (1 CPU) waited too.
NODE = "8ecbc796661649526c451f5e9197ccf4eb8495d13131d2ad6c925827"
PENDING_STATUS = {
    "time": 1796218668.864783,
    "autoscalerReport": {"nodeTypeMapping": {NODE: f"node_{NODE}"}, "legacy": True},
    "loadMetricsReport": {
        "usage": {"CPU": [2.0, 2.0], "memory": [0.0, 17316815668.0], "objectStoreMemory": [0.0, 7421492428.0],
                  "node:192.0.2.2": [0.0, 1.0], "node:InternalHead": [0.0, 1.0]},
        "resourceDemand": [[{"CPU": 1.0}, 2]],
        "pgDemand": [[{"bundles": [[{"CPU": 1.0}, 2]], "strategy": "PACK"}, 1]],
        "requestDemand": [],
        "usageByNode": {NODE: {"CPU": [2.0, 2.0], "memory": [0.0, 17316815668.0],
                               "objectStoreMemory": [0.0, 7421492428.0], "node:192.0.2.2": [0.0, 1.0],
                               "node:InternalHead": [0.0, 1.0]}},
    },
}


def status_with(**report) -> dict:
    """PENDING_STATUS with some of its loadMetricsReport replaced."""
    return {**PENDING_STATUS, "loadMetricsReport": {**PENDING_STATUS["loadMetricsReport"], **report}}


def test_cluster_resources_reads_totals_and_whether_nodes_can_be_added():
    resources = head.cluster_resources(PENDING_STATUS)
    assert resources.total == {"CPU": 2.0, "GPU": 0.0} and resources.used == {"CPU": 2.0, "GPU": 0.0}
    assert resources.largest_node == {"CPU": 2.0, "GPU": 0.0} and resources.fixed
    # An autoscaler names nodes after its node types (KubeRay's `gpu` group): the totals may grow.
    scaled = {**PENDING_STATUS, "autoscalerReport": {"nodeTypeMapping": {NODE: "headgroup", "b" * 56: "gpu"}}}
    assert not head.cluster_resources(scaled).fixed
    # Two nodes: the totals add up, the largest node is the biggest one.
    two = status_with(usage={"CPU": [0.0, 6.0], "GPU": [0.0, 1.0]},
                      usageByNode={NODE: {"CPU": [0.0, 2.0]}, "b" * 56: {"CPU": [0.0, 4.0], "GPU": [0.0, 1.0]}})
    assert head.cluster_resources(two).total == {"CPU": 6.0, "GPU": 1.0}
    assert head.cluster_resources(two).largest_node == {"CPU": 4.0, "GPU": 1.0}
    assert head.cluster_resources({}) is None  # a head whose monitor wrote nothing


def test_pending_demand_reads_as_ray_status_lists_it():
    assert head.pending_demand(PENDING_STATUS) == ["{CPU: 1} x 2 (tasks/actors)", "{CPU: 1} x 2 (placement group, PACK)"]
    trial = status_with(resourceDemand=[[{"CPU": 0.0, "memory": 268435456.0}, 1]], pgDemand=[],
                        requestDemand=[[{"GPU": 1.0}, 4]])
    assert head.pending_demand(trial) == ["{CPU: 0, memory: 0.25 GiB} x 1 (tasks/actors)",
                                          "{GPU: 1} x 4 (request_resources)"]
    assert head.pending_demand(status_with(resourceDemand=[], pgDemand=[])) == []


def test_a_demand_is_reported_once_when_it_has_stayed_pending():
    said = []
    watch = head.DemandWatch(lambda: None, said.append, persist_s=10.0)
    at = PENDING_STATUS["time"]
    assert watch.observe(PENDING_STATUS) is None                       # first seen: may be a moment's
    assert watch.observe({**PENDING_STATUS, "time": at + 5}) is None   # not yet 10 s
    message = watch.observe({**PENDING_STATUS, "time": at + 10})
    assert message.startswith("waiting for resources: Ray's pending demand for 10 s (this job's, or another's): "
                              "{CPU: 1} x 2 (tasks/actors); {CPU: 1} x 2 (placement group, PACK); in use: 2/2 CPU;")
    assert watch.observe({**PENDING_STATUS, "time": at + 20}) is None  # said once
    # Placed, then the same demand again (Ray Train retries a placement group that timed out):
    # not said twice. A different demand is, once it has lasted.
    assert watch.observe({**status_with(resourceDemand=[], pgDemand=[]), "time": at + 25}) is None
    assert watch.observe({**PENDING_STATUS, "time": at + 30}) is None
    assert watch.observe({**PENDING_STATUS, "time": at + 40}) is None
    other = {**status_with(resourceDemand=[[{"CPU": 2.0}, 1]]), "time": at + 45}
    assert watch.observe(other) is None and "{CPU: 2} x 1" in watch.observe({**other, "time": at + 55})


def test_the_demand_watch_reads_only_while_the_job_waits_and_not_at_every_poll():
    now = [0.0]
    reads = []

    def read():
        reads.append(now[0])
        return {**PENDING_STATUS, "time": PENDING_STATUS["time"] + now[0]}

    said = []
    watch = head.DemandWatch(read, said.append, poll_s=5.0, persist_s=10.0, clock=lambda: now[0])
    for second in range(0, 21):
        now[0] = float(second)
        watch("RUNNING" if second < 18 else "SUCCEEDED")
    assert reads == [0.0, 5.0, 10.0, 15.0]  # every 5 s, and none once the job has ended
    assert len(said) == 1 and "pending demand for 10 s" in said[0]
    watch("PENDING")  # a read that fails (None) says nothing
    assert head.DemandWatch(lambda: None, said.append)("PENDING") is None and len(said) == 1


def test_follow_polls_beside_the_log_tail(monkeypatch):
    """--follow: the tail and the demand watch run together; the watch stops with the tail."""
    import asyncio

    class Client:
        async def tail_job_logs(self, job_id):
            for chunk in ("a\n", "b\n"):
                await asyncio.sleep(0.3)
                yield chunk

        def get_job_status(self, job_id):
            class Status:
                value = "RUNNING"
            return Status()

    monkeypatch.setattr(head, "DEMAND_POLL_S", 0.05)
    ray_head = object.__new__(head.Head)
    ray_head.client, ray_head.address, ray_head.token = Client(), "http://127.0.0.1:1", Token(None, "")
    written, polled = [], []
    ray_head.follow("j", write=written.append, on_poll=polled.append)
    assert written == ["a\n", "b\n"] and len(polled) >= 5 and set(polled) == {"RUNNING"}


# --------------------------------------------------------------------------- what a job needs


def fixed_cluster(cpus: float, gpus: float = 0.0, largest_cpus: float | None = None, fixed: bool = True):
    return head.ClusterResources(total={"CPU": cpus, "GPU": gpus}, used={"CPU": 0.0, "GPU": 0.0},
                                 largest_node={"CPU": largest_cpus or cpus, "GPU": gpus}, fixed=fixed)


def test_a_job_that_can_never_fit_is_named_by_its_fields():
    command, job = submit.load_spec(DIGITS_JOB, ["scaling.num_workers=2"])
    needs = submit.resource_needs(command, job, driver_cpus=1.0, driver_gpus=None)
    assert needs.total("CPU") == 3 and needs.total("GPU") == 0
    problem = submit.capacity_problem(needs, fixed_cluster(2), "http://head:8265")
    assert problem == ("the Ray cluster at http://head:8265 has 2 CPU and 0 GPU in all, and no autoscaler to add "
                       "nodes; the job needs 3 CPU at once, 2 worker(s) (scaling.num_workers) x 1 CPU "
                       "(scaling.cpus_per_worker) + 1 for the driver (--num-cpus): lower scaling.num_workers or "
                       "scaling.cpus_per_worker, or a smaller --num-cpus")
    assert submit.capacity_problem(needs, fixed_cluster(3), "h") is None
    assert submit.capacity_problem(needs, fixed_cluster(2, fixed=False), "h") is None  # an autoscaler may add nodes
    # A GPU job on a cluster without GPUs; a worker bigger than any node; a driver bigger than any node.
    gpu = submit.resource_needs(*submit.load_spec(DIGITS_JOB, ["scaling.use_gpu=true"]), 1.0, None)
    assert "needs 2 GPU at once, 2 worker(s)" in submit.capacity_problem(gpu, fixed_cluster(8), "h")
    assert "set scaling.use_gpu: false" in submit.capacity_problem(gpu, fixed_cluster(8), "h")
    wide = submit.resource_needs(*submit.load_spec(DIGITS_JOB, ["scaling.num_workers=1", "scaling.cpus_per_worker=3"]),
                                1.0, None)
    assert "each of its bundles needs 3 CPU on one node (scaling.cpus_per_worker), and the largest node has 2" in \
        submit.capacity_problem(wide, fixed_cluster(4, largest_cpus=2), "h")
    assert "its driver needs 3 CPU on one node (--num-cpus)" in submit.capacity_problem(
        submit.resource_needs(command, job, 3.0, None), fixed_cluster(6, largest_cpus=2), "h")


def test_a_campaign_needs_one_trial_and_its_driver():
    spec = REPO_ROOT / "jobs" / "tune-ring8-dg-ratio.yaml"
    single = submit.resource_needs(*submit.load_spec(spec, ["campaign.resources.cpus=2"]), 1.0, None)
    assert single.total("CPU") == 3
    assert "one trial (campaign.trial.mode single) x 2 CPU (campaign.resources.cpus)" in \
        submit.capacity_problem(single, fixed_cluster(2), "h")
    train = submit.resource_needs(*submit.load_spec(spec, ["campaign.trial.mode=ray-train", "campaign.trial.num_workers=3",
                                                          "campaign.resources.gpus=0.5"]), 0.0, None)
    # Ray Train gives each worker a whole GPU when use_gpu is on (campaign.resources.gpus > 0).
    assert train.total("CPU") == 3 and train.total("GPU") == 3
    problem = submit.capacity_problem(train, fixed_cluster(4, gpus=2), "h")
    assert "3 GPU at once, one trial of 3 worker(s) (campaign.trial.num_workers)" in problem
    assert "CPU at once" not in problem and "--num-cpus" not in problem


@pytest.mark.parametrize(("data", "eval_", "problem"), [
    ({"name": "mnist", "root": "mnist-data"}, {}, "data.root: 'mnist-data' is relative"),
    ({"name": "mnist", "root": "mnist-data", "download": True}, {}, None),  # a download target
    ({"name": "mnist", "root": "/mnt/zerosum/data/mnist"}, {}, None),
    ({"name": "mnist", "root": "~/data/mnist"}, {}, None),
    ({"name": "folder", "root": "/data/y", "source": {"name": "folder", "root": "x"}}, {},
     "data.source.root: 'x' is relative"),
    ({"name": "digits"}, {"featurizer_path": "weights.pt"}, "eval.featurizer_path: 'weights.pt' is relative"),
])
def test_a_relative_path_the_job_reads_names_nothing_on_the_cluster(data, eval_, problem):
    found = submit.relative_path_problem({"data": data, "eval": eval_, "tracking": {"storage_path": "runs"}})
    assert found == problem if problem is None else found.startswith(problem)


def test_a_campaigns_base_job_paths_are_read_as_written(tmp_path):
    (tmp_path / "ring8-mlp.yaml").write_text((REPO_ROOT / "jobs" / "ring8-mlp.yaml").read_text())
    campaign = tmp_path / "camp.yaml"
    campaign.write_text((REPO_ROOT / "jobs" / "tune-ring8-dg-ratio.yaml").read_text())
    command, loaded = submit.load_spec(campaign, ["data.name=mnist", "data.root=mnist-data"])
    written = submit.written_job(campaign, ["data.name=mnist", "data.root=mnist-data"], loaded)
    assert command == "tune" and written["data"]["root"] == "mnist-data"  # loaded.base has it made absolute
    assert submit.relative_path_problem(written).startswith("data.root: 'mnist-data' is relative")


# --------------------------------------------------------------------------- the MLflow server


@pytest.fixture
def http_server():
    """A server on 127.0.0.1 that answers every GET with the status in `codes[0]`."""
    import http.server
    import threading

    codes = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            self.send_response(codes[0])
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", codes
    server.shutdown()
    server.server_close()


def test_the_tracking_server_must_answer_its_health_check(http_server):
    uri, codes = http_server
    assert submit.tracking_server_problem(uri, "--tracking-uri") is None
    codes[0] = 401  # a login in front of the server: it answers
    assert submit.tracking_server_problem(uri + "/", "--tracking-uri") is None
    codes[0] = 503
    assert submit.tracking_server_problem(uri, "MLFLOW_TRACKING_URI") == (
        f"MLFLOW_TRACKING_URI {uri}: the MLflow server does not answer (GET {uri}/health: HTTP 503); start it or "
        f"fix the URI, or pass --tracking-uri cluster to keep the cluster's own MLFLOW_TRACKING_URI")
    codes[0] = 404
    assert "HTTP 404, not an MLflow server" in submit.tracking_server_problem(uri, "--tracking-uri")


def test_a_tracking_server_that_never_answers_is_given_seconds_not_minutes():
    import socket

    with socket.socket() as sock:  # it listens, so the connection is made, but nothing ever answers
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
        started = time.monotonic()
        problem = submit.tracking_server_problem(uri, "--tracking-uri", timeout_s=0.5)
        assert time.monotonic() - started < 5
    assert f"(GET {uri}/health: no answer within 0.5 s)" in problem


def test_a_tracking_server_that_is_not_there_is_refused_without_its_credentials():
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    problem = submit.tracking_server_problem(f"http://user:secret@127.0.0.1:{port}", "MLFLOW_TRACKING_URI")
    assert problem.startswith(f"MLFLOW_TRACKING_URI http://127.0.0.1:{port}: the MLflow server does not answer "
                              f"(GET http://127.0.0.1:{port}/health: Connection refused)")
    assert "secret" not in problem
    # Nothing to ask: a local store, or no URI (the cluster's own).
    assert submit.tracking_server_problem("sqlite:///mlflow.db", "--tracking-uri") is None
    assert submit.tracking_server_problem(None, "--tracking-uri") is None


def test_submit_asks_mlflow_before_it_contacts_the_head(monkeypatch, capsys):
    monkeypatch.setattr(head, "Head", lambda *a, **k: pytest.fail("the head was contacted before MLflow answered"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert cli.main(["submit", str(DIGITS_JOB), "--address", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MLFLOW_TRACKING_URI http://127.0.0.1:9: the MLflow server does not answer")
    assert err.count("\n") == 1


# --------------------------------------------------------------------------- a job that failed


# Ray 2.60's message for a job whose entrypoint exited 2 (read back from a real head).
FAILED_MESSAGE = (
    "Job entrypoint command failed with exit code 2, last available logs (truncated to 20,000 chars):\n"
    "2026-12-02 13:36:41,641\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
    "Running entrypoint for job raysubmit_rkHpzUnQYZggU2tt: python -m zerosum.cli run x.yaml\n"
    "hello\n"
    "error: x.yaml: data: data.root '/a' is not a directory; point it at the folder holding the dataset files\n")


def test_the_line_that_says_why_a_job_failed():
    assert head.job_failure_line(FAILED_MESSAGE) == \
        "error: x.yaml: data: data.root '/a' is not a directory; point it at the folder holding the dataset files"
    crashed = ("Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n"
               "Traceback (most recent call last):\n  File \"x\", line 1\n"
               "FileNotFoundError: [Errno 2] No such file or directory: '/proc/nope'\n")
    assert head.job_failure_line(crashed) == "FileNotFoundError: [Errno 2] No such file or directory: '/proc/nope'"
    assert head.job_failure_line("Failed to set up runtime environment.\npip: no such package") == \
        "Failed to set up runtime environment."
    # A message without logs: the logs' tail says it.
    assert head.job_failure_line("Job entrypoint command failed with exit code 2", "a\nerror: b\n") == "error: b"
    assert head.job_failure_line(None) is None


class FailedHead:
    """What `finish` asks of a head, for a job that has FAILED with `exit_code`."""

    address = "http://127.0.0.1:1"

    def __init__(self, exit_code: int, message: str):
        from types import SimpleNamespace

        self.info = SimpleNamespace(message=message, driver_exit_code=exit_code)
        self.client = SimpleNamespace(get_job_info=lambda job_id: self.info, get_job_logs=lambda job_id: "")

    def errors(self, job_id=None):
        import contextlib

        return contextlib.nullcontext()

    def cluster_status(self):
        return None

    def wait(self, job_id, on_change=None, timeout_s=None, on_poll=None):
        if on_change:
            on_change("FAILED")
        return "FAILED"

    def follow(self, job_id, write, on_poll=None):
        write("the job's logs\n")


def test_wait_prints_the_jobs_error_line_and_exits_2_when_it_refused_its_input(capsys):
    assert submit_cli.finish(FailedHead(2, FAILED_MESSAGE), "j1", follow=False) == 2
    out = capsys.readouterr()
    assert "job j1: FAILED (logs: zerosum jobs logs j1 --address http://127.0.0.1:1)" in out.out
    assert out.err == "error: x.yaml: data: data.root '/a' is not a directory; point it at the folder holding " \
                      "the dataset files\n"
    crashed = FAILED_MESSAGE.replace("exit code 2", "exit code 1").rsplit("error:", 1)[0] + "KeyError: 'x'\n"
    assert submit_cli.finish(FailedHead(1, crashed), "j2", follow=True) == 1
    assert capsys.readouterr().err == "error: job j2 failed on the cluster: KeyError: 'x'\n"
