"""Checkpoints: atomic writes, plain tensors only, loaded with weights_only=True."""

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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rng-rank1.pt"]


class Payload:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / ckpt.STATE_FILE
    with open(path, "wb") as f:
        torch.save({"evil": Payload()}, f)
    with pytest.raises(pickle.UnpicklingError):
        ckpt.load_weights(path)
