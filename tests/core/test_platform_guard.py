"""platform/ is a source root, never a package: it must not shadow the stdlib module."""

import os
import subprocess
import sys

from zerosum_testing import REPO_ROOT


def test_platform_dir_has_no_init():
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()


def test_stdlib_platform_wins_with_repo_root_first_on_path():
    code = "import platform, sys; print(platform.system()); print(platform.__file__)"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    system, location = out.stdout.split()
    assert system == "Linux"
    assert not location.startswith(str(REPO_ROOT))
