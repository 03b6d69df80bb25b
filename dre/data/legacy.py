"""Original DiffusionRig LMDBs: a safe reader (the tests and benchmarks write that layout with
``tests/_data_helpers.write_legacy_lmdb``).

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

import os
from pathlib import Path
from typing import Any

import numpy as np

from dre.errors import DreError
from dre.safety.unpickle import load_tensor_pickle

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
