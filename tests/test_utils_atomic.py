"""Atomic writes: complete or absent, and with the permissions a plain write would have had."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dre.utils.atomic import atomic_dir, atomic_path, atomic_write_text, current_umask


@pytest.fixture()
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing_it(umask_027) -> None:
    assert current_umask() == 0o027
    assert current_umask() == 0o027


def test_files_and_folders_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path, umask_027) -> None:
    """mkstemp/mkdtemp make 0600/0700; results must be group-readable like any file the user writes."""
    atomic_write_text(tmp_path / "a.txt", "x")
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"y")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "inner.txt").write_text("z")
    plain = tmp_path / "plain.txt"
    plain.write_text("p")
    assert mode(tmp_path / "a.txt") == mode(tmp_path / "b.bin") == mode(plain) == 0o640
    assert mode(tmp_path / "out") == 0o750


def test_a_failed_write_leaves_nothing_and_keeps_the_old_version(tmp_path: Path) -> None:
    dest = tmp_path / "r.txt"
    atomic_write_text(dest, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert dest.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.txt"]
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("half")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.txt"]
