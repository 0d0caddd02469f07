"""CLI start-up: `zerosum --help` and `zerosum validate` against `mlflow --help` and `ray --help`.

Each command runs `--repeats` times in a fresh interpreter; the best wall time is
printed (the least disturbed by other load), with the heaviest imports of the
zerosum commands from `python -X importtime`. Aims (reported, not asserted):
`zerosum --help` 0.3 s and `zerosum validate` 0.5 s on 2 cores.

    .venv/bin/python bench/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPEC = REPO / "jobs" / "mnist-dcgan.yaml"


def best_wall_s(command: list[str], repeats: int) -> float:
    """The shortest of `repeats` wall times of `command`, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return min(times)


def heaviest_imports(code: str, top: int = 5) -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of the `top` slowest top-level imports of `code`."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        if cumulative.isdigit() and not name.startswith(" "):
            rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    commands = {
        "zerosum --help": [str(BIN / "zerosum"), "--help"],
        f"zerosum validate {SPEC.name}": [str(BIN / "zerosum"), "validate", str(SPEC)],
        "mlflow --help": [str(BIN / "mlflow"), "--help"],
        "ray --help": [str(BIN / "ray"), "--help"],
    }
    for label, command in commands.items():
        print(f"{best_wall_s(command, args.repeats):6.2f} s  {label}")
    code = f"from zerosum.cli import main; main(['validate', {str(SPEC)!r}])"
    print("heaviest imports of `zerosum validate` (cumulative ms):")
    for micros, name in heaviest_imports(code):
        print(f"  {micros / 1000:7.1f}  {name}")


if __name__ == "__main__":
    main()
