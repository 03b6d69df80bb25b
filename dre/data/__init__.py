"""Datasets: the versioned LMDB schema (write, read, legacy import), Parquet manifests, training loaders.

Heavy imports (torch, lmdb, pyarrow) happen inside the functions that need them, so ``import dre.data``
stays cheap for the CLI.
"""

from __future__ import annotations

from dre.data.dataset import FaceDataset, load_album_tensors
from dre.data.store import LmdbAlbum, build_lmdb

__all__ = [
    "FaceDataset",
    "LmdbAlbum",
    "build_lmdb",
    "load_album_tensors",
]
