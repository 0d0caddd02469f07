"""Every loader of a file zerosum writes refuses a pickled payload without running it.

The payload's __reduce__ would create a marker file when unpickled: each loader must
raise, and the marker must not exist. Checkpoints, featurizers and Inception weights go
through torch.load(weights_only=True); real-feature caches and feature statistics through
np.load(allow_pickle=False); manifests, campaign reports and folder records are JSON.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from evals.classifier import load_classifier
from evals.inception import load_inception_state_dict
from evals.stats import FeatureStats
from zerosum.config import load_job
from zerosum.evaluation.plan import build_extractor
from zerosum.evaluation.reference import real_reference, reference_cache_path
from zerosum.records import FolderRecord
from zerosum.train import checkpoint as ckpt
from zerosum.tune.champion import find_champion
from zerosum.tune.schema import REPORT_FILE
from zerosum_testing import JOBS


class Payload:
    """Unpickling this creates `marker`: proof that a loader ran pickled code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def torch_pickle(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": Payload(marker)}, path)
    return path


def raw_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"files": Payload(marker)}))
    return path


def npz_with_object_array(path: Path, marker: Path) -> Path:
    # np.savez pickles object arrays; np.load(allow_pickle=False) must refuse them.
    np.savez(path, features=np.array([Payload(marker)], dtype=object), probs=np.zeros(1))
    return path


def load_reference_from(path: Path, tmp_path: Path, monkeypatch) -> None:
    """real_reference on a ring8 job, with its cache file replaced by the payload."""
    monkeypatch.setenv("ZEROSUM_CACHE", str(tmp_path / "cache"))
    spec = load_job(JOBS / "ring8-mlp.yaml", ["eval.num_samples=64", "eval.metrics=[mmd]", "data.num_samples=512"])
    extractor = build_extractor(spec, (2,), torch.device("cpu"))
    cache = reference_cache_path(spec, extractor, "test", 64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    npz_with_object_array(cache, path)
    real_reference(spec, extractor)


def load_champion_from(folder: Path, marker: Path) -> None:
    stamp = folder / "trial_0" / "checkpoint_000001" / REPORT_FILE
    stamp.parent.mkdir(parents=True)
    raw_pickle(stamp, marker)
    find_champion(folder, "min")


def load_record_from(folder: Path, marker: Path) -> None:
    raw_pickle(folder / "record.json", marker)
    FolderRecord.load(folder)


def check_manifest_of(folder: Path, marker: Path) -> str | None:
    raw_pickle(folder / ckpt.manifest_file(0), marker)
    return ckpt.checkpoint_problem(folder)


LOADERS = {
    "checkpoint": lambda tmp, marker, mp: ckpt.load_weights(torch_pickle(tmp / ckpt.STATE_FILE, marker)),
    "featurizer": lambda tmp, marker, mp: load_classifier(torch_pickle(tmp / "mnist.pt", marker)),
    "inception weights": lambda tmp, marker, mp: load_inception_state_dict(torch_pickle(tmp / "pt_inception.pt", marker)),
    "feature statistics": lambda tmp, marker, mp: FeatureStats.load(npz_with_object_array(tmp / "stats.npz", marker)),
    "real-feature cache": lambda tmp, marker, mp: load_reference_from(marker, tmp, mp),
    "campaign report": lambda tmp, marker, mp: load_champion_from(tmp, marker),
    "folder record": lambda tmp, marker, mp: load_record_from(tmp, marker),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_pickled_payload_is_refused_and_never_run(loader, tmp_path, monkeypatch):
    marker = tmp_path / "pickled-code-ran"
    with pytest.raises((pickle.UnpicklingError, ValueError, UnicodeDecodeError)):
        LOADERS[loader](tmp_path, marker, monkeypatch)
    assert not marker.exists()


def test_a_pickled_manifest_fails_verification_without_running(tmp_path):
    marker = tmp_path / "pickled-code-ran"
    problem = check_manifest_of(tmp_path, marker)
    assert problem == "manifest-rank0.json is not a readable manifest"
    assert not marker.exists()


def test_the_payload_does_run_when_unpickled(tmp_path):
    """The control: the payload is live, so the tests above prove a refusal."""
    marker = tmp_path / "pickled-code-ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()
