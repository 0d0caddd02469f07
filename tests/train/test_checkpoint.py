"""Checkpoints: atomic writes, plain tensors only, loaded with weights_only=True."""

import hashlib
import json
import pickle

import pytest
import torch

from zerosum.train import checkpoint as ckpt


def test_round_trip_with_rng(tmp_path):
    generator = torch.Generator().manual_seed(3)
    state = {"generator": {"w": torch.ones(2)}, "rounds_done": 7, "extra/stop": {"best": 1.5}}
    ckpt.write_checkpoint(tmp_path, 0, state, ckpt.rng_state(generator), "name: x\n")
    expected = torch.rand(3, generator=generator)
    loaded, rng = ckpt.read_checkpoint(tmp_path, 0)
    assert loaded["rounds_done"] == 7 and loaded["config_yaml"] == "name: x\n"
    ckpt.restore_rng(rng, generator)
    # Exact: a restored generator replays the same bits.
    torch.testing.assert_close(torch.rand(3, generator=generator), expected, rtol=0, atol=0)
    assert not list(tmp_path.glob("*.tmp"))


def test_other_ranks_write_rng_only(tmp_path):
    ckpt.write_checkpoint(tmp_path, 1, None, ckpt.rng_state(torch.Generator()), "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest-rank1.json", "rng-rank1.pt"]


class Payload:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / ckpt.STATE_FILE
    with open(path, "wb") as f:
        torch.save({"evil": Payload()}, f)
    with pytest.raises(pickle.UnpicklingError):
        ckpt.load_weights(path)


def whole_checkpoint(folder):
    ckpt.write_checkpoint(folder, 0, {"players": {"g": {"w": torch.arange(1000.0)}}, "rounds_done": 3},
                          ckpt.rng_state(torch.Generator()), "name: x\n")
    ckpt.write_checkpoint(folder, 1, None, ckpt.rng_state(torch.Generator()), "name: x\n")
    return folder


def test_a_whole_checkpoint_passes_its_manifest(tmp_path):
    folder = whole_checkpoint(tmp_path)
    assert ckpt.checkpoint_problem(folder) is None
    listed = json.loads((folder / "manifest-rank0.json").read_text())["files"]
    assert sorted(listed) == ["config.yaml", "rng-rank0.pt", "state.pt"]
    # The recorded digest is the file's sha256, as hashlib computes it in one go.
    assert listed["state.pt"]["sha256"] == hashlib.sha256((folder / "state.pt").read_bytes()).hexdigest()


@pytest.mark.parametrize(("damage", "named"), [
    (lambda f: (f / "state.pt").write_bytes((f / "state.pt").read_bytes()[:-100]), "state.pt has"),
    (lambda f: (f / "manifest-rank0.json").unlink(), "no manifest-rank0.json"),
    (lambda f: (f / "rng-rank1.pt").unlink(), "rng-rank1.pt is missing"),
    # Same size, one byte changed: only the digest can tell.
    (lambda f: (f / "state.pt").write_bytes(bytes([(f / "state.pt").read_bytes()[0] ^ 1])
                                            + (f / "state.pt").read_bytes()[1:]), "state.pt does not match"),
    (lambda f: (f / "manifest-rank1.json").write_text("{not json"), "manifest-rank1.json is not"),
])
def test_a_damaged_checkpoint_names_what_failed(tmp_path, damage, named):
    folder = whole_checkpoint(tmp_path)
    damage(folder)
    assert named in ckpt.checkpoint_problem(folder)


def test_folders_sort_in_report_order():
    names = ["round_0000600", "round_0000500-r1", "round_0000400", "round_0000600-r1", "checkpoint_000002"]
    assert sorted(names, key=ckpt.report_order) == [
        "checkpoint_000002", "round_0000400", "round_0000600", "round_0000500-r1", "round_0000600-r1"]
    assert ckpt.folder_name(500) == "round_0000500" and ckpt.folder_name(500, 2) == "round_0000500-r2"
