"""`zerosum eval` on image folders: the same images score as equal, noise does not. (Its bad
inputs, an unknown metric among them, are rows of docs/errors.md.)"""

import numpy as np
from PIL import Image

from zerosum_testing import zerosum_here


def write_pngs(folder, images):
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:04d}.png")


def test_eval_folders_tell_same_from_different(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    # Smooth blobs as "real" data; uniform noise as a bad generator.
    grid = np.linspace(-1, 1, 8)
    centres = rng.uniform(-0.5, 0.5, size=(120, 2))
    blobs = np.exp(-((grid[None, :, None] - centres[:, None, None, 0]) ** 2
                     + (grid[None, None, :] - centres[:, None, None, 1]) ** 2) / 0.2)
    write_pngs(tmp_path / "real", (blobs * 255).astype(np.uint8))
    write_pngs(tmp_path / "same", (blobs * 255).astype(np.uint8))
    write_pngs(tmp_path / "noise", rng.integers(0, 256, size=(120, 8, 8), dtype=np.uint8))

    monkeypatch.setenv("COLUMNS", "200")  # the table's width: wide enough that no cell wraps

    def scores(fake):
        out = zerosum_here("eval", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / fake),
                           "--metrics", "fid,mmd", "--features", "identity", "-n", "120", "--permutations", "200",
                           cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        rows = [line.split("│") for line in out.stdout.splitlines() if "eval/" in line]
        return {cells[1].strip(): float(cells[2]) for cells in rows}

    same, noise = scores("same"), scores("noise")
    assert abs(same["eval/fid"]) < 1e-6
    assert same["eval/mmd_pvalue"] > 0.5
    assert noise["eval/fid"] > 1.0
    assert noise["eval/mmd_pvalue"] < 0.01

