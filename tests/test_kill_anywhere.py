"""Kill anywhere: SIGKILL a command at seeded random moments, rerun it, get the uninterrupted outputs.

For `dre pack`, `dre train` (stage 1 with two DataLoader workers, stage 2 with one) and `dre edit`: one
uninterrupted run gives the reference; then the same command, at the same paths, is killed (the whole
process group, DataLoader workers included, with SIGKILL: no handler runs) at moments drawn from a seeded
RNG over the reference's duration, and finally rerun to completion. The outputs must equal the
reference bit for bit — LMDB values and the manifest, model files tensor by tensor, edit PNGs byte for
byte — and no temporary file of an interrupted write may be left anywhere under the run's folder.

Each case costs a reference run plus one run per kill plus the final run (each loads torch: several
seconds even for these tiny models), so all are in the slow set; ``KILLS`` moments per command.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _edit_helpers import STEPS as EDIT_STEPS
from _edit_helpers import crop_tforms_for, synthetic_codes, write_aligned, write_codes, write_model
from train_support import TINY_MODEL, write_tiny_lmdb

pytestmark = pytest.mark.slow

KILLS = 3
TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(?:tmp|old)")  # dre.safety.atomic's temporaries


def _env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _complete(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, start_new_session=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
    return time.monotonic() - t0


def _killed(cmd: list[str], env: dict[str, str], at: float) -> bool:
    """Start ``cmd`` and SIGKILL its whole process group ``at`` seconds later; False if it finished first."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        proc.wait(timeout=at)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def _killed_mid_write(cmd: list[str], env: dict[str, str], root: Path) -> bool:
    """Start ``cmd`` and SIGKILL it the moment a temporary of an atomic write appears under ``root``."""
    before = set(_leftovers(root))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    while proc.poll() is None:
        if set(_leftovers(root)) - before:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    return False


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if TEMP.match(p.name))


def _kill_and_rerun(name: str, cmd: list[str], env: dict[str, str], reference_seconds: float, root: Path) -> list[float]:
    """Kill ``cmd`` at ``KILLS`` seeded moments in a row and once in the middle of an atomic write (the
    moment its temporary appears), then run it to completion; returns the moments."""
    rng = random.Random(f"kill-anywhere/{name}")
    moments = [round(rng.uniform(0.15, 0.95) * reference_seconds, 2) for _ in range(KILLS)]
    killed = [_killed(cmd, env, at) for at in moments]
    assert any(killed), f"{name}: every run finished before its kill moment {moments}"
    assert _killed_mid_write(cmd, env, root), f"{name}: no atomic write was seen to kill it in"
    assert _leftovers(root), "a write killed in the middle leaves its temporary (the rerun must sweep it)"
    _complete(cmd, env)
    assert not _leftovers(root), _leftovers(root)
    return moments


def _tree_bytes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _lmdb_items(path: Path) -> dict[bytes, bytes]:
    import lmdb

    with lmdb.open(str(path), readonly=True, lock=False) as env, env.begin() as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor()}


def _model_tensors(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_model(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for part in ("state_dict", "ema_state_dict"):
        if a[part] is None:
            assert b[part] is None
            continue
        assert a[part].keys() == b[part].keys(), part
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}[{k}] differs from the uninterrupted run"
    assert {k: v for k, v in a.items() if not k.endswith("state_dict")} == {
        k: v for k, v in b.items() if not k.endswith("state_dict")}


# ----------------------------------------------------------------------------------------- pack
def test_pack(tmp_path: Path, synthetic_assets: Path, cli_env: dict[str, str]) -> None:
    from dre.edit.inputs import list_sources

    album = tmp_path / "album"
    write_aligned(album, [f"p{k:02d}" for k in range(6)], seed=3)
    faces = list_sources(album)
    write_codes(tmp_path / "codes.parquet", faces, synthetic_codes(len(faces), 4), crop_tforms_for(faces), "deca")
    out, manifest = tmp_path / "x.lmdb", tmp_path / "x.parquet"
    cmd = [sys.executable, "-m", "dre", "pack", "--images", str(album), "--codes", str(tmp_path / "codes.parquet"),
           "--assets", str(synthetic_assets), "--out", str(out), "--size", "32", "--batch-size", "2",
           "--device", "cpu"]  # fmt: skip
    env = _env(cli_env)
    seconds = _complete(cmd, env)
    ref_items, ref_manifest = _lmdb_items(out), manifest.read_bytes()
    shutil.rmtree(out)
    manifest.unlink()
    _kill_and_rerun("pack", cmd, env, seconds, tmp_path)
    assert _lmdb_items(out) == ref_items
    assert manifest.read_bytes() == ref_manifest


# ----------------------------------------------------------------------------------------- train
def _train_cmd(stage: int, lmdb: Path, run: Path, out: Path, workers: int, steps: int, init: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "dre", "train", "--stage", str(stage), "--lmdb", str(lmdb), "--run-dir", str(run),
           "--out", str(out), *TINY_MODEL, "--num-workers", str(workers), "--device", "cpu", "--batch-size", "4",
           "--max-steps", str(steps), "--save-every", "2", "--keep", "1", "--log-every", "1", "--dropout", "0.1",
           "--ema", "0.9"]  # fmt: skip
    return cmd + (["--init", str(init)] if init is not None else [])


@pytest.mark.parametrize("stage,workers", [(1, 2), (2, 1)])
def test_train(tmp_path: Path, cli_env: dict[str, str], stage: int, workers: int) -> None:
    env = _env(cli_env)
    lmdb = write_tiny_lmdb(tmp_path / "data.lmdb", 9, seed=2)
    init = None
    if stage == 2:
        init = tmp_path / "stage1.pt"
        _complete(_train_cmd(1, lmdb, tmp_path / "run1", init, 0, 2, None), env)
    run, out = tmp_path / "run", tmp_path / "model.pt"
    cmd = _train_cmd(stage, lmdb, run, out, workers, 9, init)
    seconds = _complete(cmd, env)
    reference = _model_tensors(out)
    shutil.rmtree(run)
    out.unlink()
    _kill_and_rerun(f"train{stage}", cmd, env, seconds, tmp_path)
    _assert_same_model(_model_tensors(out), reference)


# ----------------------------------------------------------------------------------------- edit
def test_edit(tmp_path: Path, synthetic_assets: Path, cli_env: dict[str, str]) -> None:
    from dre.edit.inputs import list_sources

    write_aligned(tmp_path / "album", ["b_photo", "a_photo", "c_photo"], seed=10)
    write_aligned(tmp_path / "target", ["smile"], seed=99)
    faces = list_sources(tmp_path / "album")
    codes = tmp_path / "album.deca.parquet"
    write_codes(codes, faces, synthetic_codes(len(faces), 1), crop_tforms_for(faces), "deca")
    write_model(tmp_path / "model.pt")
    out = tmp_path / "edit"
    cmd = [sys.executable, "-m", "dre", "edit", "--model", str(tmp_path / "model.pt"), "--assets",
           str(synthetic_assets), "--source", str(tmp_path / "album"), "--source-codes", str(codes), "--target",
           str(tmp_path / "target"), "--steps", str(EDIT_STEPS), "--device", "cpu", "--modes", "exp,light",
           "--seed", "3", "--batch-size", "2", "--out", str(out)]  # fmt: skip
    env = _env(cli_env)
    seconds = _complete(cmd, env)
    reference = _tree_bytes(out)
    assert any(name.endswith(".png") for name in reference)
    shutil.rmtree(out)
    _kill_and_rerun("edit", cmd, env, seconds, tmp_path)
    assert _tree_bytes(out) == reference
