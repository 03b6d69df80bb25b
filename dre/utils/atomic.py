"""Atomic file and folder writes.

A job killed half-way (SLURM wall time, Ctrl-C, OOM) must never leave a file that looks complete.
Everything is written to a temporary sibling in the same folder (same file system, so the rename is
atomic) and renamed over the destination only when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _tmp_sibling(dest: Path, suffix: str = "") -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
    os.close(fd)
    return Path(name)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc/self/status``).

    Why it matters: ``mkstemp``/``mkdtemp`` create 0600 files and 0700 folders, and a rename keeps
    them, so without a fix every result would be unreadable by the user's group (a shared cluster
    project, a web server showing the report) whatever their umask says.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # fallback: read by setting, then restore at once
    os.umask(mask)
    return mask


def _give_default_mode(path: Path, *, folder: bool) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would have (0666/0777 minus the umask)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``dest`` to; rename it over ``dest`` on success, delete on error.

    The temporary name keeps ``dest``'s suffix so writers that infer a format from it still work.
    """
    dest = Path(dest)
    tmp = _tmp_sibling(dest, dest.suffix)
    try:
        yield tmp
        _give_default_mode(tmp, folder=False)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically (fsynced before the rename)."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``dest`` atomically."""
    atomic_write_bytes(dest, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder to fill; it replaces ``dest`` only if the block completes.

    An interrupted build leaves ``dest`` as it was (absent or the previous complete version) and
    removes the temporary folder. With ``overwrite=False`` an existing ``dest`` is an error.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; refusing to overwrite it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        _give_default_mode(tmp, folder=True)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / "prev")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
