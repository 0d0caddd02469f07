"""The record a run folder or campaign folder keeps: what it is and where it is tracked.

`<folder>/record.json`, the same keys for both kinds, so that `--resume` (and
`zerosum sync`, tools, people) read every folder one way:

    kind          "run" or "campaign"
    name          the job's or campaign's name (folders are `<name>-<time>`)
    tracking_uri  the MLflow store
    run_id        the MLflow run (a campaign's parent run)
    experiment    the MLflow experiment
    started_at    unix seconds; finished_at once it ended; resumes: times resumed
    logged        a run's results (curves, generator) reached the tracking server: true;
                  false while `zerosum sync` still has to send them; null before the end
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from zerosum.errors import ZerosumError
from zerosum.files import atomic_write_text

RECORD_FILE = "record.json"


@dataclass
class FolderRecord:
    kind: str
    name: str
    tracking_uri: str
    run_id: str
    experiment: str
    started_at: float
    finished_at: float | None = None
    resumes: int = 0
    logged: bool | None = None

    def save(self, folder: Path) -> None:
        atomic_write_text(json.dumps(asdict(self), indent=2), folder / RECORD_FILE)

    @classmethod
    def load(cls, folder: Path) -> FolderRecord:
        return cls(**json.loads((folder / RECORD_FILE).read_text()))


def is_record_of(record: FolderRecord, kind: str, name: str) -> bool:
    return record.kind == kind and record.name == name


def new_folder(root: Path, name: str) -> Path:
    """`<root>/<name>-<YYYYmmdd-HHMMSS>`, created; never an existing one. Runs of one job
    started within the same second (two shells, a script's loop) get `-2`, `-3`, ...:
    mkdir's failure on an existing name is the lock, so two processes never share one."""
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    root.mkdir(parents=True, exist_ok=True)
    folder, attempt = root / stem, 1
    while True:
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            attempt += 1
            folder = root / f"{stem}-{attempt}"


def latest_folder(root: Path, name: str, kind: str, field: str) -> Path:
    """The newest folder under `root` whose record is of this kind and name, for --resume.
    `field` names the spec field behind `root`, for the message when there is none."""
    candidates = [p for p in root.glob(f"{name}-*")
                  if (p / RECORD_FILE).is_file() and is_record_of(FolderRecord.load(p), kind, name)]
    if not candidates:
        raise ZerosumError(f"--resume: no earlier {kind} of '{name}' under {root} ({field})")
    return max(candidates, key=lambda p: (p / RECORD_FILE).stat().st_mtime)
