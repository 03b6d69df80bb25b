"""The one SHA-256-of-a-file helper (asset checksums, the codes table an LMDB was packed from).

Why a cache: the same multi-hundred-MB assets (``deca_model.tar``, EMOCA checkpoints) are checksummed by
extraction, packing and the face model within one process; hashing them once is enough. The cache key
includes the inode, size and modification time, so a file replaced by an atomic rename (new inode) or
rewritten in place (new size or time) is hashed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_BLOCK = 1 << 22
_cache: dict[tuple[str, int, int, int, int], str] = {}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file's bytes (cached per path, inode, size and mtime within the process)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _cache.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                h.update(block)
        digest = _cache[key] = h.hexdigest()
    return digest
