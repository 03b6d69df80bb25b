"""Original DiffusionRig LMDBs: a safe reader and a writer of that layout (for tests and benchmarks).

The original ``scripts/create_data.py`` stores, per sample ``i``: ``image_%06d`` (PNG bytes),
``albedo_%06d`` / ``normal_%06d`` / ``rendered_%06d`` (``pickle.dumps`` of a float32 CPU tensor
(3,H,W)) and finally ``length`` (ASCII decimal). A mean-shape album also has ``mean_shape.pkl``
(a pickled (1,100) tensor, often a CUDA one) inside the LMDB folder.

Unpickling such values with :mod:`pickle` runs whatever the pickle names, so an LMDB downloaded from
somewhere is code execution. Every value goes through the project's one restricted unpickler
(:func:`dre.safety.unpickle.load_tensor_pickle`): only a plain torch tensor, rebuilt from its validated
bytes, sizes and strides, comes out; anything else is refused with a :class:`DreError` naming the key.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from dre.errors import DreError
from dre.safety.unpickle import UnsafePickleError, load_tensor_pickle

__all__ = ["LegacyLmdb", "UnsafePickleError", "write_legacy_lmdb"]

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BUFFER_NAMES: tuple[str, ...] = ("rendered", "normal", "albedo")  # the condition channel order
LEGACY_MEAN_SHAPE = "mean_shape.pkl"


class LegacyLmdb:
    """Reader of an original DiffusionRig LMDB (read-only; every tensor via :func:`~dre.safety.unpickle.load_tensor_pickle`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import lmdb

        self.path = Path(path)
        if not (self.path / "data.mdb").is_file():
            raise DreError(f"--import-legacy {self.path}: not an LMDB folder (no data.mdb)")
        self.env = lmdb.open(str(self.path), readonly=True, lock=False, readahead=False, meminit=False)
        with self.env.begin() as txn:
            raw = txn.get(b"length")
        if raw is None:
            raise DreError(f"{self.path}: no 'length' key; not an original DiffusionRig LMDB (or an unfinished one)")
        try:
            self.length = int(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise DreError(f"{self.path}: 'length' is {raw[:32]!r}, not a decimal count") from None
        if self.length < 0:
            raise DreError(f"{self.path}: negative 'length' {self.length}")

    def close(self) -> None:
        self.env.close()

    def _get(self, txn: Any, key: str) -> bytes:
        value = txn.get(key.encode("ascii"))
        if value is None:
            raise DreError(f"{self.path}: key {key!r} is missing (length says {self.length} samples)")
        return value

    def sample(self, i: int) -> tuple[bytes, np.ndarray]:
        """(PNG bytes, (9,H,W) float32 condition in the order rendered, normal, albedo)."""
        with self.env.begin() as txn:
            png = self._get(txn, f"image_{i:06d}")
            parts = []
            for name in BUFFER_NAMES:
                key = f"{name}_{i:06d}"
                t = load_tensor_pickle(self._get(txn, key), f"{self.path} key {key!r}")
                if t.ndim != 3 or t.shape[0] != 3 or not t.is_floating_point():
                    raise DreError(f"{self.path} key {key!r}: expected a (3,H,W) float tensor, got "
                                   f"{tuple(t.shape)} {t.dtype}")  # fmt: skip
                parts.append(t.detach().float().numpy())
        shapes = {p.shape for p in parts}
        if len(shapes) != 1:
            raise DreError(f"{self.path} sample {i}: buffers have different shapes {sorted(shapes)}")
        return png, np.concatenate(parts, axis=0)

    def __iter__(self) -> Iterator[tuple[bytes, np.ndarray]]:
        for i in range(self.length):
            yield self.sample(i)

    def mean_shape(self) -> np.ndarray | None:
        """The album mean shape from ``mean_shape.pkl`` (safely unpickled), or None."""
        p = self.path / LEGACY_MEAN_SHAPE
        if not p.is_file():
            return None
        t = load_tensor_pickle(p.read_bytes(), str(p))
        arr = t.detach().float().reshape(-1).numpy()
        if arr.size != 100:
            raise DreError(f"{p}: mean shape has {arr.size} values, expected 100")
        return arr


def write_legacy_lmdb(path: str | os.PathLike[str], images_png: list[bytes], conds: list[np.ndarray],
                      mean_shape: np.ndarray | None = None) -> None:  # fmt: skip
    """Write an LMDB in the original DiffusionRig layout (for tests and the side-by-side benchmark).

    ``conds`` are (9,H,W) float arrays in the order rendered, normal, albedo; each buffer is stored as
    ``pickle.dumps`` of a float32 CPU tensor, one write transaction per sample and ``length`` last, as
    the original writer does (but with a sized map instead of 1 TiB).
    """
    import lmdb
    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    per_sample = max((c.size * 4 + len(p) for p, c in zip(images_png, conds)), default=0)
    env = lmdb.open(str(path), map_size=max(1 << 20, 2 * per_sample * (len(conds) + 1) + (1 << 20)), readahead=False)
    try:
        for i, (png, cond) in enumerate(zip(images_png, conds)):
            with env.begin(write=True) as txn:
                txn.put(f"image_{i:06d}".encode(), png)
                for k, name in enumerate(BUFFER_NAMES):
                    t = torch.from_numpy(np.ascontiguousarray(cond[3 * k : 3 * k + 3], dtype=np.float32)).clone()
                    txn.put(f"{name}_{i:06d}".encode(), pickle.dumps(t))
        with env.begin(write=True) as txn:
            txn.put(b"length", str(len(conds)).encode())
    finally:
        env.close()
    if mean_shape is not None:
        t = torch.as_tensor(np.asarray(mean_shape, np.float32).reshape(1, -1))
        (path / LEGACY_MEAN_SHAPE).write_bytes(pickle.dumps(t))
