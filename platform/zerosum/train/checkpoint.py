"""Self-describing, atomic checkpoints: tensors and plain values only.

A checkpoint folder holds
- `state.pt`: every player and optimiser by name, EMA-G, the round, the
  stopping rule's state and the resolved config (a YAML string), written by rank 0;
- `rng-rank{r}.pt`: each rank's RNG states (torch CPU, CUDA, the noise generator);
- `config.yaml`: the resolved config, for people;
- `manifest-rank{r}.json`: the size and sha256 of each file that rank wrote, written
  last, so that a checkpoint cut short (a copy or an upload that stopped halfway, a
  disk that filled) is told from a whole one before anything is loaded from it.
Ray merges the ranks' folders into one. Every file is written to a temporary
name and renamed, and is read back with `torch.load(weights_only=True)`:
nothing in a checkpoint is ever unpickled as code.

Folders are named `round_{round:07d}`, and `round_{round:07d}-r{n}` after n rollbacks
(a rolled-back run trains some rounds twice; the second pass must not overwrite the first).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from zerosum.files import atomic_torch_save, atomic_write_text

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
MANIFEST_GLOB = "manifest-rank*.json"
HEALTH_KEY = "extra/health"  # the divergence policy's record in state.pt (train/health.py)
FOLDER_NAME = re.compile(r"round_(\d+)(?:-r(\d+))?$")
HASH_CHUNK_BYTES = 1 << 20


def folder_name(round_index: int, rollbacks: int = 0) -> str:
    """The checkpoint folder of a round: `round_0000500`, or `round_0000500-r1` after a rollback."""
    return f"round_{round_index:07d}" + (f"-r{rollbacks}" if rollbacks else "")


def report_order(name: str) -> tuple[int, int]:
    """Sort key that orders a run's checkpoint folders as they were reported: by rollbacks,
    then round. Names that are not zerosum's (Tune's `checkpoint_000003`) sort by their number."""
    match = FOLDER_NAME.match(name)
    if match:
        return int(match.group(2) or 0), int(match.group(1))
    digits = re.findall(r"\d+", name)
    return 0, int(digits[-1]) if digits else -1


def newest_first(names: list[str], before: str | None = None) -> list[str]:
    """The checkpoint folders among `names` (zerosum's and Tune's), newest reported first;
    only those reported before `before` when it is given."""
    folders = [n for n in names if FOLDER_NAME.match(n) or n.startswith("checkpoint_")]
    if before is not None:
        folders = [n for n in folders if report_order(n) < report_order(before)]
    return sorted(folders, key=report_order, reverse=True)


def manifest_file(rank: int) -> str:
    return f"manifest-rank{rank}.json"


def rng_file(rank: int) -> str:
    return f"rng-rank{rank}.pt"


def load_weights(path: Path) -> dict[str, Any]:
    """Load a checkpoint file; only tensors and plain containers are accepted."""
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state(noise_generator: torch.Generator, augment_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG a rank draws from: torch's (CPU, CUDA), the noise and augmentation generators."""
    state = {"torch": torch.get_rng_state(), "noise": noise_generator.get_state()}
    if augment_generator is not None:
        state["augment"] = augment_generator.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any], noise_generator: torch.Generator,
                augment_generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    noise_generator.set_state(state["noise"])
    if augment_generator is not None and "augment" in state:
        augment_generator.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def file_digest(path: Path) -> dict[str, Any]:
    """{"bytes": size, "sha256": hex digest} of one file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def write_manifest(folder: Path, rank: int, names: list[str]) -> None:
    """This rank's manifest of the files it wrote; the last file of its share."""
    entries = {name: file_digest(folder / name) for name in names}
    atomic_write_text(json.dumps({"rank": rank, "files": entries}, indent=1, sort_keys=True), folder / manifest_file(rank))


def checkpoint_problem(folder: Path) -> str | None:
    """Why the checkpoint in `folder` cannot be trusted, or None when it is whole.

    Whole: rank 0's manifest is there (it covers state.pt), and every file that any rank's
    manifest names has its recorded size and sha256."""
    if not (folder / manifest_file(0)).is_file():
        return f"no {manifest_file(0)} (the checkpoint was cut short, or predates manifests)"
    for manifest in sorted(folder.glob(MANIFEST_GLOB)):
        try:
            entries = json.loads(manifest.read_text())["files"]
        except (ValueError, KeyError, TypeError):
            return f"{manifest.name} is not a readable manifest"
        for name, expected in sorted(entries.items()):
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != expected["bytes"]:
                return f"{name} has {path.stat().st_size} bytes, the manifest says {expected['bytes']}"
            if file_digest(path)["sha256"] != expected["sha256"]:
                return f"{name} does not match its sha256 in {manifest.name}"
    return None


def newest_trusted_folder(run_dir: Path) -> Path | None:
    """The run folder's newest checkpoint (in report order) that passes its manifest."""
    names = newest_first([p.name for p in run_dir.iterdir() if p.is_dir()])
    return next((run_dir / name for name in names if checkpoint_problem(run_dir / name) is None), None)


def write_checkpoint(folder: Path, rank: int, state: dict[str, Any] | None, rng: dict[str, Any],
                     config_yaml: str) -> None:
    """Write this rank's share of a checkpoint into `folder` (rank 0 adds the model state),
    then its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(rng, folder / rng_file(rank))
    names = [rng_file(rank)]
    if rank == 0 and state is not None:
        atomic_torch_save({**state, "config_yaml": config_yaml}, folder / STATE_FILE)
        atomic_write_text(config_yaml, folder / CONFIG_FILE)
        names += [STATE_FILE, CONFIG_FILE]
    write_manifest(folder, rank, names)


def read_checkpoint(folder: Path, rank: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(state, this rank's rng state or None when the world size changed)."""
    state = load_weights(folder / STATE_FILE)
    rng_path = folder / rng_file(rank)
    return state, (load_weights(rng_path) if rng_path.exists() else None)
