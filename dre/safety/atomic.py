"""Atomic, durable file and folder writes.

A job killed half-way (SLURM wall time, Ctrl-C, OOM, power loss) must never leave a file that looks
complete. Everything is written to a temporary sibling in the same folder (same file system, so the
rename is atomic). Before the rename publishes it, its bytes — every file of a folder, and the folders
themselves — are fsynced, so after a crash the destination is either the old version or the complete
new one, never a renamed but empty file. The parent folder is fsynced after the rename so the new
name itself survives.

Temporaries are named ``.<dest name>.<8 random chars>.tmp<suffix>`` (and ``.old`` for a replaced
folder on its way out). A run that was killed leaves them behind; the next write to the same
destination removes them first (:func:`sweep`), so an interrupted-then-rerun command leaves no litter.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

_TMP_RE = r"\.[A-Za-z0-9_]{8}\.(?:tmp|old)"  # what mkstemp/mkdtemp add between our prefix and suffix


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


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file's contents or a folder's entries (folders: best effort, some file systems refuse)."""
    is_dir = os.path.isdir(path)
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if is_dir else 0))
    except OSError:
        if is_dir:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not is_dir:
            raise
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """fsync every file below ``root``, then every folder bottom-up, then ``root``."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            p = os.path.join(folder, name)
            if not os.path.islink(p):
                fsync_path(p)
        fsync_path(folder)


def _remove_matching(folder: Path, pattern: str) -> list[Path]:
    """Remove the entries directly inside ``folder`` whose names match ``pattern``; returns them."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for p in folder.iterdir():
            if re.match(pattern, p.name):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                removed.append(p)
    return removed


def sweep(dest: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries that earlier, interrupted writes of ``dest`` left beside it; returns them."""
    dest = Path(dest)
    return _remove_matching(dest.parent, r"^\." + re.escape(dest.name) + _TMP_RE)


def sweep_folder(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove every temporary of our naming pattern directly inside ``folder`` (a run folder at start-up)."""
    return _remove_matching(Path(folder), r"^\..+" + _TMP_RE)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``dest`` to; fsync and rename it over ``dest`` on success, delete
    it on error. The temporary name keeps ``dest``'s suffix so writers that infer a format still work."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep(dest)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        publish_file(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically and durably."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``dest`` atomically and durably."""
    atomic_write_bytes(dest, text.encode("utf-8"))


_RENAME_EXCHANGE = 2
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = _libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def publish_file(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Move a finished file ``src`` (on ``dest``'s file system) over ``dest`` durably and in one step.

    For files that could not be written through :func:`atomic_path` because they outlive one process
    (a download resumed across runs, a member extracted into a staging folder and validated there).
    """
    src, dest = Path(src), Path(dest)
    _give_default_mode(src, folder=False)
    fsync_path(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)
    fsync_path(dest.parent)


def publish_dir(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Move a finished folder ``src`` (on ``dest``'s file system) to ``dest`` durably, replacing ``dest``
    in one step where the kernel allows it: an existing ``dest`` is swapped out, then deleted. Whether
    ``dest`` may be replaced is the caller's question."""
    src, dest = Path(src), Path(dest)
    _give_default_mode(src, folder=True)
    fsync_tree(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(dest):
        if _exchange(src, dest):  # dest is now the new folder, src the old one
            fsync_path(dest.parent)
            old = src.with_name(src.name.removesuffix(".tmp") + ".old")
            os.replace(src, old)
            shutil.rmtree(old, ignore_errors=True)
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / "prev")
            os.replace(src, dest)
            fsync_path(dest.parent)
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)
    fsync_path(dest.parent)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder to fill; it replaces ``dest`` only if the block completes.

    An interrupted build leaves ``dest`` as it was (absent or the previous complete version). The new
    folder is fsynced before it is published; an existing ``dest`` is swapped out in one step where the
    kernel allows it, and then deleted. With ``overwrite=False`` an existing ``dest`` is an error.
    Whether ``dest`` *may* be replaced is the caller's question (``dre.safety.ownership``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; refusing to overwrite it")
    sweep(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        publish_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
