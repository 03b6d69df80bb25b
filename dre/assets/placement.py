"""Which asset files ``dre assets fetch`` / ``add`` may write: absent ones, and their own invalid ones.

Why a record: an assets folder belongs to the user (their licensed FLAME files, perhaps copied by hand),
so a command that places files must tell a file it placed from one the user put there. Each placed file
(or EMOCA model folder) is listed in :data:`MANIFEST` with its size and sha256. At a destination:

- absent: place it;
- present and valid: leave it untouched, whoever wrote it;
- present, invalid, listed in the manifest and unchanged since: ours, it may be replaced;
- present, invalid, not ours: refuse, naming the file and its problem (the user moves it away).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from dre.assets.check import problem
from dre.errors import DreError
from dre.safety.atomic import atomic_write_text
from dre.utils.hashing import sha256_file

MANIFEST = ".dre-assets.json"
MANIFEST_FORMAT = "dre-assets/1"


@dataclass(frozen=True)
class Placed:
    """What fetch or add did at one destination: ``action`` is ``present`` (valid already, untouched),
    ``downloaded`` / ``would download`` (fetch) or ``added`` (add); ``source`` is the URL or input."""

    rel: str
    action: str
    source: str


@contextlib.contextmanager
def folder_lock(root: Path, command: str) -> Iterator[None]:
    """Create the assets folder if absent and hold an exclusive lock on it (``flock`` on its descriptor: no
    lock file is added), so two fetch/add runs cannot interleave their manifest updates or sweep each other's
    staging."""
    if root.exists() and not root.is_dir():
        raise DreError(f"--assets {root} is a file, not a folder")
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DreError(
                f"{root}: another `dre assets fetch` or `dre assets add` is working on this folder; wait for it to "
                f"finish, then run {command} again"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def read_manifest(root: Path) -> dict[str, Any]:
    """``{relative path: entry}`` of what fetch/add placed (empty when there is no readable manifest)."""
    try:
        data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def _listing(path: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of a file (key ``""``) or of every file below a folder (relative keys)."""
    files = [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file() and not q.is_symlink())
    return {("" if p == path else p.relative_to(path).as_posix()): {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in files}  # fmt: skip


def record(root: Path, rel: str, source: str) -> None:
    """Add the file or folder now at ``root/rel`` to the manifest (``source``: URL or archive it came from)."""
    files = read_manifest(root)
    files[rel] = {"source": source, "content": _listing(root / rel)}
    text = json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1, sort_keys=True) + "\n"
    atomic_write_text(root / MANIFEST, text)


def placed_by_us(root: Path, rel: str) -> bool:
    """True when ``root/rel`` is what fetch/add placed there, unchanged (sizes and hashes as recorded)."""
    entry = read_manifest(root).get(rel)
    path = root / rel
    if not isinstance(entry, dict) or path.is_symlink() or not path.exists():
        return False
    return entry.get("content") == _listing(path)


def valid_in_place(root: Path, rel: str, validate: Callable[[Path], Any]) -> bool:
    """True when a valid ``root/rel`` is in place (left untouched, whoever wrote it); False when it is absent
    or ours and invalid (it may be written); :class:`DreError` when it is invalid and not ours (never touched)."""
    path = root / rel
    if not os.path.lexists(path):
        return False
    if path.is_symlink():
        raise DreError(
            f"{path} is a symbolic link; dre does not replace links it did not make: remove it or point it at a "
            "valid file yourself"
        )
    why = problem(validate, path)
    if why is None:
        return True
    if placed_by_us(root, rel):
        return False  # ours and invalid: it may be replaced
    raise DreError(
        f"{path} exists but is not valid ({why}), and dre did not place it; it is left untouched. Move it away or "
        "delete it yourself, then run the command again"
    )
