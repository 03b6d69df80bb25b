"""Output helpers: deterministic PNG / npz bytes, the labelled grid, noise seeding (edit.parquet: test_tables)."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from dre.edit import outputs
from dre.edit.engine import noise_seed, source_noise


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_to_uint8_rounds_and_clips():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 3.0], dtype=np.float32).reshape(1, 1, 5).repeat(3, 0)
    u = outputs.to_uint8(x)
    assert u.shape == (1, 5, 3) and u.dtype == np.uint8
    assert u[0, :, 0].tolist() == [0, 0, 128, 255, 255]  # 127.5 rounds half-to-even → 128
    assert outputs.unit_to_uint8(np.full((3, 2, 2), 0.5))[0, 0, 0] == 128


def test_png_and_npz_are_byte_identical_across_time(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    arrs = {"rendered": rng.standard_normal((3, 8, 8)).astype(np.float16), "alpha": np.ones((1, 8, 8), np.float16)}
    outputs.save_png(tmp_path / "a.png", img)
    outputs.write_npz(tmp_path / "a.npz", arrs)
    time.sleep(2.1)  # zip stores 2-second resolution times: a wall-clock stamp would change the bytes
    outputs.save_png(tmp_path / "b.png", img)
    outputs.write_npz(tmp_path / "b.npz", arrs)
    assert _sha(tmp_path / "a.png") == _sha(tmp_path / "b.png")
    assert _sha(tmp_path / "a.npz") == _sha(tmp_path / "b.npz")
    back = np.load(tmp_path / "a.npz")
    assert set(back.files) == {"rendered", "alpha"} and np.array_equal(back["rendered"], arrs["rendered"])


def test_grid_layout_places_cells(tmp_path):
    cell = 32
    colours = [[np.full((cell, cell, 3), 40 * (r * 3 + c), np.uint8) for c in range(3)] for r in range(2)]
    grid = outputs.make_grid(colours, ["source", "target", "exp"], ["a", "b"], cell=cell, banner="SYNTHETIC")
    grid2 = outputs.make_grid(colours, ["source", "target", "exp"], ["a", "b"], cell=cell)
    assert grid.shape[0] > grid2.shape[0]  # the banner adds a strip
    assert grid.shape[1] > 3 * cell and grid.shape[0] > 2 * cell
    # each cell's centre pixel holds its own colour, in row-major order, left to right
    found = []
    h, w = grid2.shape[:2]
    for value in [40 * k for k in range(6)]:
        ys, xs = np.nonzero(np.all(grid2 == value, axis=-1))
        blocks = [(y, x) for y, x in zip(ys, xs)]
        assert len(blocks) >= cell * cell, value
        found.append((int(np.median(ys)), int(np.median(xs))))
    assert found[0][0] == found[1][0] == found[2][0] < found[3][0] == found[4][0] == found[5][0]
    assert found[0][1] < found[1][1] < found[2][1]
    with pytest.raises(ValueError):
        outputs.make_grid(colours, ["source", "target"], ["a", "b"], cell=cell)


def test_noise_is_per_source_and_independent_of_the_album():
    a = source_noise(7, ["x", "y", "z"], (3, 8, 8))
    b = source_noise(7, ["z", "x"], (3, 8, 8))
    assert a.shape == (3, 3, 8, 8)
    assert a[0].equal(b[1]) and a[2].equal(b[0])  # same stem, same noise, wherever it sits
    assert not a[0].equal(a[1])
    assert not source_noise(8, ["x"], (3, 8, 8))[0].equal(a[0])  # another seed, other noise
    assert noise_seed(7, "x") == noise_seed(7, "x") and 0 <= noise_seed(7, "x") < 2**63
