"""Atomic writes: complete or absent, durable before they are published, no litter after a kill."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dre.safety import atomic
from dre.safety.atomic import atomic_dir, atomic_path, atomic_write_text, current_umask, sweep


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


def _record(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Log of ('fsync', path) and ('rename', dest) in call order."""
    events: list[tuple[str, str]] = []
    real_fsync, real_open, real_replace = os.fsync, os.open, os.replace
    fds: dict[int, str] = {}

    def fake_open(path, flags, *a, **k):
        fd = real_open(path, flags, *a, **k)
        fds[fd] = os.fspath(path)
        return fd

    def fake_fsync(fd):
        events.append(("fsync", fds.get(fd, "?")))
        return real_fsync(fd)

    def fake_replace(src, dst):
        events.append(("rename", os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "fsync", fake_fsync)
    monkeypatch.setattr(os, "replace", fake_replace)
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)  # the portable two-rename path
    return events


def test_contents_are_fsynced_before_the_rename_and_the_parent_after(tmp_path: Path, monkeypatch) -> None:
    events = _record(monkeypatch)
    with atomic_path(tmp_path / "f.bin") as tmp:
        tmp.write_bytes(b"data")  # the writer does not fsync: atomic_path must
    synced_tmp = [i for i, (kind, p) in enumerate(events) if kind == "fsync" and Path(p).name.startswith(".f.bin.")]
    rename = events.index(("rename", str(tmp_path / "f.bin")))
    assert synced_tmp and synced_tmp[0] < rename
    assert ("fsync", str(tmp_path)) in events[rename:]


def test_every_file_of_a_folder_is_fsynced_before_it_is_published(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    events = _record(monkeypatch)
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.txt").write_text("a")
        (tmp / "b.txt").write_text("b")
    publish = events.index(("rename", str(tmp_path / "out")))
    synced = {Path(p).name for kind, p in events[:publish] if kind == "fsync"}
    assert {"a.txt", "b.txt", "sub"} <= synced
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.txt", "sub"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replacing_a_folder_swaps_it_in_one_step(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with atomic_dir(dest) as tmp:
        (tmp / "v").write_text("1")
    inode = dest.stat().st_ino
    with atomic_dir(dest) as tmp:
        (tmp / "v").write_text("2")
    assert (dest / "v").read_text() == "2" and dest.stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_leftovers_of_a_killed_write_are_swept_by_the_next(tmp_path: Path) -> None:
    (tmp_path / ".model.pt.abcd_123.tmp.pt").write_bytes(b"half")  # what a SIGKILL leaves
    (tmp_path / ".album.k2j4h5g6.tmp").mkdir()
    (tmp_path / ".album.zzzzzzzz.old").mkdir()
    (tmp_path / ".model.pt.notours").write_bytes(b"x")  # not our pattern: kept
    with atomic_path(tmp_path / "model.pt") as tmp:
        tmp.write_bytes(b"full")
    with atomic_dir(tmp_path / "album") as tmp:
        (tmp / "a").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.pt.notours", "album", "model.pt"]
    assert sweep(tmp_path / "model.pt") == []
