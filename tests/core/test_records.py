"""Run and campaign folders: two started in the same second never share a folder."""

from __future__ import annotations

import time

from zerosum.records import new_folder


def test_folders_made_within_one_second_are_distinct(tmp_path, monkeypatch):
    """A frozen clock makes every call land in the same second, as two shells starting the
    same job at once do; each still gets its own, new folder."""
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20261204-213207")
    folders = [new_folder(tmp_path / "runs", "mnist-seed") for _ in range(3)]
    assert [f.name for f in folders] == ["mnist-seed-20261204-213207", "mnist-seed-20261204-213207-2",
                                         "mnist-seed-20261204-213207-3"]
    assert all(f.is_dir() and not any(f.iterdir()) for f in folders)
