"""`zerosum ui` serves MLflow's UI on 127.0.0.1 over zerosum's store."""

import subprocess

import pytest

from zerosum_testing import zerosum_ui

pytestmark = pytest.mark.integration


def test_ui_serves_the_store_on_loopback(workdir):
    (workdir / "mlflow.db").unlink()  # the UI makes the folder's store when there is none
    with zerosum_ui(workdir) as port:
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        local_addresses = {line.split()[3] for line in listening.splitlines()}
        assert local_addresses == {f"127.0.0.1:{port}"}
        assert (workdir / "mlflow.db").is_file()
