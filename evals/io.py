"""Atomic file writes: the one implementation that evals and zerosum share.

A crash mid-write must leave the old file or the new one, never half of either:
the data goes to a hidden temporary name beside the target (same folder, so the
rename stays on one filesystem), is flushed and fsynced, then renamed over it.
The temporary name carries the pid and a random part, so concurrent writers of
one cache entry (two Ray workers) never share a temporary file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_torch_save", "atomic_write", "atomic_write_bytes", "atomic_write_text"]


def atomic_write(path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary binary file, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(data: bytes, path) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(text: str, path) -> Path:
    """UTF-8 text, written atomically."""
    return atomic_write_bytes(text.encode("utf-8"), path)


def atomic_torch_save(obj, path) -> Path:
    """torch.save (tensors and plain values), atomically."""
    import torch

    return atomic_write(path, lambda handle: torch.save(obj, handle))
