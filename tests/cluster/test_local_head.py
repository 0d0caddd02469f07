"""`zerosum up` / `zerosum down`: a local head with token auth on 127.0.0.1 that runs attach to.

One head, started and stopped by the CLI in this test, in its own ZEROSUM_HOME (the
`workdir` fixture's, `own_ray`); nothing else of Ray is touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from zerosum.cluster.local_head import STATE_FILE, pid_alive
from zerosum_testing import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.mark.own_ray
def test_zerosum_up_keeps_a_head_with_token_auth_and_zerosum_down_stops_it(workdir):
    state_path = workdir / "zerosum-home" / "head" / STATE_FILE
    up = run_cli("up", "--num-cpus", "2", cwd=workdir)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads(state_path.read_text())
        assert up.stdout.startswith(f"started a Ray head at {state['address']}")
        assert pid_alive(state["pid"]) and state["address"].startswith("127.0.0.1:")
        assert (os.stat(state["token_path"]).st_mode & 0o777) == 0o600
        # Token auth is on: the dashboard's API refuses a request without the token.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{state['dashboard']}/api/version", timeout=10)
        assert refused.value.code in (401, 403)
        again = run_cli("up", cwd=workdir)
        assert again.returncode == 0 and again.stdout.startswith(f"already up: a Ray head at {state['address']}")
        # A run attaching to such a head is every Ray run of this suite (conftest.workdir), and
        # tests/methods/test_methods_ray.py checks that it did.
    finally:
        down = run_cli("down", cwd=workdir)
    assert down.returncode == 0 and down.stdout.startswith(f"stopped the Ray head at {state['address']}")
    assert not pid_alive(state["pid"]) and not state_path.exists()
    assert run_cli("down", cwd=workdir).stdout.startswith("no head of `zerosum up` is running")


def test_a_state_file_whose_head_is_gone_is_removed_and_reads_as_no_head(tmp_path):
    from zerosum.cluster.local_head import read_head

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / STATE_FILE).write_text(json.dumps({
        "pid": int(gone.stdout), "address": "127.0.0.1:1", "dashboard": "http://127.0.0.1:2",
        "token_path": str(tmp_path / "auth_token"), "temp_dir": str(tmp_path), "num_cpus": None, "started_at": 0.0}))
    assert read_head(tmp_path) is None and not (tmp_path / STATE_FILE).exists()


def test_the_head_listens_on_loopback_and_every_fixed_port_is_a_free_one():
    from zerosum.cluster.local_head import PORT_FLAGS, ray_start_command

    command = ray_start_command(6379, 8265, "/tmp/zsh.x", 2)
    assert command[command.index("--node-ip-address") + 1] == "127.0.0.1"
    assert command[command.index("--dashboard-host") + 1] == "127.0.0.1"
    assert command[command.index("--num-cpus") + 1] == "2"
    ports = [int(command[command.index(flag) + 1]) for flag in PORT_FLAGS]
    assert len(set(ports)) == len(PORT_FLAGS) and all(port > 1024 for port in ports)
