"""evals stands alone: importing all of it loads no ray, mlflow or zerosum module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import evals, evals.stats, evals.fid, evals.mmd, evals.modes, evals.stopping
import evals.features, evals.classifier, evals.inception, evals.metrics, evals.translation
# Touch the lazily imported torch-fidelity too, as building an Inception extractor does.
import torch_fidelity.feature_extractor_inceptionv3
banned = sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "mlflow", "zerosum"))
print(json.dumps(banned))
"""


def test_import_loads_no_ray_mlflow_or_zerosum():
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_evals_sources_do_not_name_them():
    """A cheaper second line of defence: no import statement mentions the banned packages."""
    for path in (REPO_ROOT / "evals").rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.strip().split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                assert words[1].split(".")[0] not in ("ray", "mlflow", "zerosum"), f"{path}: {line}"
