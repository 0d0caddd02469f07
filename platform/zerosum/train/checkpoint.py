"""Self-describing, atomic checkpoints: tensors and plain values only.

A checkpoint folder holds
- `state.pt`: every player and optimiser by name, EMA-G, the round, the
  stopping rule's state and the resolved config (a YAML string), written by rank 0;
- `rng-rank{r}.pt`: each rank's RNG states (torch CPU, CUDA, the noise generator);
- `config.yaml`: the resolved config, for people.
Ray merges the ranks' folders into one. Every file is written to a temporary
name and renamed, and is read back with `torch.load(weights_only=True)`:
nothing in a checkpoint is ever unpickled as code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zerosum.files import atomic_torch_save, atomic_write_text

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"


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


def write_checkpoint(folder: Path, rank: int, state: dict[str, Any] | None, rng: dict[str, Any],
                     config_yaml: str) -> None:
    """Write this rank's share of a checkpoint into `folder` (rank 0 adds the model state)."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(rng, folder / rng_file(rank))
    if rank == 0 and state is not None:
        atomic_torch_save({**state, "config_yaml": config_yaml}, folder / STATE_FILE)
        atomic_write_text(config_yaml, folder / CONFIG_FILE)


def read_checkpoint(folder: Path, rank: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(state, this rank's rng state or None when the world size changed)."""
    state = load_weights(folder / STATE_FILE)
    rng_path = folder / rng_file(rank)
    return state, (load_weights(rng_path) if rng_path.exists() else None)
