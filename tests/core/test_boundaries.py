"""The package boundaries of docs/architecture.md, enforced.

- models, losses and train.steps import no ray or mlflow;
- only zerosum.tracking imports mlflow, and a rank other than 0 never loads it;
- `zerosum --help` and `zerosum validate` load no torch, ray or mlflow;
- no import cycles among the modules of zerosum and evals, lazy (in-function) imports included.
evals' own boundary (no ray, mlflow or zerosum) is tests/evals/test_evals_boundaries.py.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zerosum_testing import JOBS, REPO_ROOT

PACKAGE_ROOTS = {"zerosum": REPO_ROOT / "platform" / "zerosum", "evals": REPO_ROOT / "evals"}
HEAVY = ("torch", "ray", "mlflow")


def loaded_after(code: str) -> set[str]:
    """Top-level package names in sys.modules after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", ["zerosum.models", "zerosum.losses", "zerosum.methods", "zerosum.train.steps",
                                    "zerosum.train.build", "zerosum.catalog", "zerosum.config"])
def test_core_modules_import_no_ray_or_mlflow(module):
    assert not loaded_after(f"import {module}") & {"ray", "mlflow"}


def module_name(path: Path) -> str:
    for package, root in PACKAGE_ROOTS.items():
        if path.is_relative_to(root):
            parts = (package, *path.relative_to(root).with_suffix("").parts)
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def imports_of(path: Path, top_level_only: bool) -> set[str]:
    """Modules `path` imports (absolute names); only module-level statements if asked."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def source_files() -> list[Path]:
    return sorted(p for root in PACKAGE_ROOTS.values() for p in root.rglob("*.py"))


def test_only_tracking_imports_mlflow():
    importers = {module_name(p) for p in source_files()
                 if any(m == "mlflow" or m.startswith("mlflow.") for m in imports_of(p, top_level_only=False))}
    assert importers == {"zerosum.tracking"}


def test_no_import_cycles():
    modules = {module_name(p): p for p in source_files()}
    graph = {name: {m for m in imports_of(path, top_level_only=False) if m in modules and m != name}
             for name, path in modules.items()}
    # A package's __init__ is imported before its submodules: an edge to it is real.
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                cycles.append(stack[stack.index(child):] + [child])
            elif child not in state:
                visit(child, stack + [child])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_help_loads_no_torch_ray_or_mlflow():
    loaded = loaded_after("import sys\nfrom zerosum.cli import main\nsys.argv = ['zerosum', '--help']\n"
                          "try:\n    main()\nexcept SystemExit:\n    pass")
    assert not loaded & set(HEAVY)


def test_validate_loads_no_torch_ray_or_mlflow():
    loaded = loaded_after(f"from zerosum.cli import main\nmain(['validate', {str(JOBS / 'digits-dcgan.yaml')!r}])")
    assert not loaded & set(HEAVY)


def test_a_rank_other_than_0_never_loads_mlflow(tmp_path):
    """Rank 1 of 2 runs the real loop (rounds, an eval, a checkpoint report) with a run id
    in its config: only rank 0 logs, so mlflow must stay unloaded in its process."""
    code = f"""
import torch
from zerosum.config import job_to_dict, load_job
from zerosum.train.loop import train_worker

class Rank1:
    rank, world_size, device = 1, 2, torch.device("cpu")
    reports = 0
    def prepare_model(self, model):
        return model
    def get_checkpoint(self):
        return None
    def report(self, metrics, checkpoint):
        Rank1.reports += 1

spec = load_job({str(JOBS / 'ring8-mlp.yaml')!r}, ["schedule.max_rounds=4", "eval.every_rounds=2",
                "eval.num_samples=64", "schedule.batch_size=16", "data.num_samples=256"])
train_worker({{"job": job_to_dict(spec), "tracking_uri": "sqlite:///{tmp_path}/mlflow.db", "run_id": "x"}}, Rank1())
assert Rank1.reports == 2, Rank1.reports
"""
    assert "mlflow" not in loaded_after(code)
