"""Submission logic without a cluster: token and address resolution, what is shipped, error messages."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from zerosum import cli
from zerosum.cli import jobs as jobs_cli
from zerosum.cli import submit as submit_cli
from zerosum.cluster import head, submit
from zerosum.cluster.head import Token, explain_failure, resolve_address, resolve_token
from zerosum.errors import ZerosumError
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
        "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": "http://mlflow:5000", "WANDB": "x"}
    assert submit.job_tracking_uri("http://other:5000", environ) == "http://other:5000"
    assert submit.job_tracking_uri("cluster", environ) is None
    assert "MLFLOW_TRACKING_URI" not in submit.job_env_vars([], None, environ)
    with pytest.raises(ZerosumError, match="--env NOPE: it is not set"):
        submit.job_env_vars(["NOPE"], uri, environ)
    with pytest.raises(ZerosumError, match="expected an environment variable name"):
        submit.job_env_vars(["A=B"], uri, environ)


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
