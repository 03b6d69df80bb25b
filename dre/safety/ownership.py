"""Which existing outputs a command may replace: only what dre itself wrote.

Why: outputs are published by renaming a finished temporary over the destination, and a folder that is
replaced is deleted. Pointed at the wrong place (``--out resources/assets``, ``--out`` equal to the
input, a typo'd ``--output``), that would delete a user's own files. So every writer asks this module
first, and:

- **folders** we write carry a marker file, :data:`MARKER` (``.dre-output.json``: the command, and every
  file with its size — and its sha256 where the folder is small, e.g. synthetic assets). A folder may be
  replaced when it is absent, empty, or carries our marker and holds nothing but the files the marker
  lists, unchanged (a file the user added or swapped in — say their real ``generic_model.pkl`` — makes the
  folder theirs again). Run folders (``dre train --run-dir``) grow while training, so their marker lists
  no files; they are continued, never replaced.
- **files** must be absent or show evidence that dre wrote them: a Parquet file's ``dre`` metadata, a
  model file's ``format`` key, a PNG's ``Software: dre`` text chunk, our TSV header (see
  :func:`claim_file`'s callers).
- an output equal to, inside, or containing one of the command's inputs is always refused.

Every refusal is a :class:`~dre.errors.DreError` naming the path and what to do (another path, or delete
it yourself). Snakemake deletes a job's declared outputs before it runs the job, so in the workflow the
destination is normally absent and none of this gets in the way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from dre.errors import DreError
from dre.safety.atomic import atomic_dir, atomic_write_text

MARKER = ".dre-output.json"
MARKER_FORMAT = "dre-output/1"
_IGNORED = {"lock.mdb"}  # LMDB's lock file, created by readers that open with locking


def _resolve(p: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(p))))


def check_apart(dest: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None], flag: str) -> None:
    """Refuse ``dest`` when it is, is inside, or contains any of ``inputs`` (``None`` entries are skipped)."""
    d = _resolve(dest)
    for src in inputs:
        if src is None:
            continue
        s = _resolve(src)
        if d == s or s in d.parents or d in s.parents:
            rel = "is" if d == s else ("is inside" if s in d.parents else "contains")
            raise DreError(f"{flag} {dest} {rel} the input {src}; write the output somewhere else")


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _files(folder: Path) -> list[Path]:
    """Every file below ``folder`` (relative), the marker and LMDB lock files excepted."""
    out = []
    for root, _dirs, names in os.walk(folder):
        for n in names:
            rel = (Path(root) / n).relative_to(folder)
            if rel.as_posix() != MARKER and n not in _IGNORED:
                out.append(rel)
    return sorted(out)


def read_marker(folder: str | os.PathLike[str]) -> dict | None:
    """The folder's marker, or None when it has none (or not a readable one of ours)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MARKER_FORMAT else None


def write_marker(folder: str | os.PathLike[str], command: str, *, hashes: bool = False, listing: bool = True) -> None:
    """Record in ``folder`` that ``command`` made it (and what it holds); call when the folder is complete."""
    folder = Path(folder)
    files = None
    if listing:
        files = {}
        for rel in _files(folder):
            entry: dict = {"size": (folder / rel).stat().st_size}
            if hashes:
                entry["sha256"] = _sha256(folder / rel)
            files[rel.as_posix()] = entry
    data = {"format": MARKER_FORMAT, "command": command, "files": files}
    atomic_write_text(folder / MARKER, json.dumps(data, indent=1, sort_keys=True) + "\n")


def _foreign(folder: Path, marker: dict) -> list[str]:
    """Files in ``folder`` that its marker does not vouch for (added, resized or changed since)."""
    listed = marker.get("files")
    if listed is None:
        return []
    bad = []
    for rel in _files(folder):
        entry = listed.get(rel.as_posix()) if isinstance(listed, dict) else None
        path = folder / rel
        if not isinstance(entry, dict) or entry.get("size") != path.stat().st_size:
            bad.append(rel.as_posix())
        elif "sha256" in entry and entry["sha256"] != _sha256(path):
            bad.append(rel.as_posix())
    return bad


def claim_dir(dest: str | os.PathLike[str], *, flag: str = "--out", inputs: Iterable = (),
              evidence: Callable[[Path], bool] | None = None) -> None:  # fmt: skip
    """Raise unless folder ``dest`` may be replaced (absent, empty, or ours and unchanged).

    ``evidence``: for folders written before markers existed, a check that recognises our own layout.
    """
    check_apart(dest, inputs, flag)
    d = Path(dest)
    if not os.path.lexists(d):
        return
    if d.is_symlink() or not d.is_dir():
        raise DreError(f"{flag} {dest} exists and is not a folder; choose another path or remove it yourself")
    if not any(d.iterdir()):
        return
    marker = read_marker(d)
    if marker is None:
        if evidence is not None and evidence(d):
            return
        raise DreError(
            f"{flag} {dest} is a folder dre did not write (it has no {MARKER}); refusing to replace it and its "
            "files: choose another path, or delete the folder yourself if you are sure"
        )
    foreign = _foreign(d, marker)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise DreError(
            f"{flag} {dest} was written by {marker.get('command', 'dre')} but now holds files it did not write "
            f"or that changed since ({shown}); refusing to replace them: move them out, choose another path, "
            "or delete the folder yourself"
        )


def claim_file(dest: str | os.PathLike[str], *, evidence: Callable[[Path], bool], what: str, flag: str = "--out",
               inputs: Iterable = ()) -> None:  # fmt: skip
    """Raise unless file ``dest`` is absent or ``evidence`` shows dre wrote it (``what`` describes that)."""
    check_apart(dest, inputs, flag)
    d = Path(dest)
    if not os.path.lexists(d):
        return
    if d.is_symlink() or not d.is_file():
        raise DreError(f"{flag} {dest} exists and is not a regular file; choose another path or remove it yourself")
    try:
        ours = evidence(d)
    except Exception:  # unreadable, truncated, another format: not evidence that we wrote it
        ours = False
    if not ours:
        raise DreError(
            f"{flag} {dest} exists and is not {what}; refusing to overwrite a file dre did not write: choose "
            "another path, or delete it yourself if you are sure"
        )


@contextlib.contextmanager
def owned_dir(dest: str | os.PathLike[str], command: str, *, flag: str = "--out", inputs: Iterable = (),
              hashes: bool = False, evidence: Callable[[Path], bool] | None = None) -> Iterator[Path]:  # fmt: skip
    """:func:`claim_dir`, then a temporary folder to fill; on success it gets our marker and replaces ``dest``."""
    claim_dir(dest, flag=flag, inputs=inputs, evidence=evidence)
    with atomic_dir(dest) as tmp:
        yield tmp
        write_marker(tmp, command, hashes=hashes)


def claim_run_dir(run_dir: str | os.PathLike[str], command: str, *, known: Iterable[str], flag: str = "--run-dir",
                  inputs: Iterable = ()) -> None:  # fmt: skip
    """A folder that a command continues (training checkpoints): create it with our marker, or accept it
    when it has the marker or holds only ``known`` entries (our layout, from before markers existed)."""
    check_apart(run_dir, inputs, flag)
    d = Path(run_dir)
    if os.path.lexists(d) and (d.is_symlink() or not d.is_dir()):
        raise DreError(f"{flag} {run_dir} exists and is not a folder; choose another path")
    if d.is_dir() and read_marker(d) is None:
        names = {p.name for p in d.iterdir()}
        if names - set(known):
            raise DreError(
                f"{flag} {run_dir} is a folder dre did not write (no {MARKER}; it holds "
                f"{', '.join(sorted(names - set(known))[:5])}); choose another {flag} or empty it yourself"
            )
    d.mkdir(parents=True, exist_ok=True)
    if read_marker(d) is None:
        write_marker(d, command, listing=False)


# ------------------------------------------------------------------------------- evidence for files
# pyarrow, PIL and torch are imported where used: this module is imported by every stage, and the align
# environment has no torch.
def parquet_is_ours(path: Path) -> bool:
    """A Parquet file with our ``dre`` key-value metadata."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return b"dre" in meta


def claim_table(dest: str | os.PathLike[str], *, flag: str = "--out", inputs: Iterable = ()) -> None:
    """:func:`claim_file` for a Parquet table we write (evidence: its ``dre`` metadata)."""
    claim_file(dest, evidence=parquet_is_ours, what="a table written by dre (Parquet with dre metadata)",
               flag=flag, inputs=inputs)


def png_is_ours(path: Path) -> bool:
    """A PNG whose ``Software`` text chunk starts with ``dre`` (see :data:`PNG_INFO`)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.format == "PNG" and str(im.info.get("Software", "")).startswith("dre")


PNG_SOFTWARE = "dre (DiffusionRig-Emo)"


def model_file_is_ours(path: Path) -> bool:
    """A ``torch.save`` file whose dict's ``format`` starts with ``dre-`` (read lazily, weights_only)."""
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return isinstance(obj, dict) and str(obj.get("format", "")).startswith("dre-")


def text_starts_with(prefix: str) -> Callable[[Path], bool]:
    """Evidence for small text outputs: the file begins with our own header line."""

    def check(path: Path) -> bool:
        with open(path, "rb") as fh:
            return fh.read(len(prefix.encode())) == prefix.encode()

    return check
