"""Sidecar landmarks: ``<image>.txt`` / ``<image>.npy`` (68×2) beside each photo.

The convention DECA's test loader accepts (``os.path.splitext(image)[0] + '.txt'``), so albums with
landmarks from any tool (or hand-corrected ones) align without weights, and tests need no model.
``<name>.<ext>.txt`` is accepted too. A ``.npy`` may hold several faces as (N, 68, 2); a third
column (FAN's 3D output) is ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dre.align.backends import Face, NoLandmarks, SequentialBatch
from dre.safety.atomic import atomic_path


def sidecar_candidates(image_path: Path) -> list[Path]:
    """Where a sidecar for ``image_path`` may be, in order of preference."""
    p = Path(image_path)
    return [p.with_suffix(".npy"), p.with_suffix(".txt"), Path(f"{p}.npy"), Path(f"{p}.txt")]


def read_sidecar(path: Path) -> np.ndarray:
    """Read a sidecar as (N, 68, 2) float32; raises ``NoLandmarks('error', ...)`` naming the file."""
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise NoLandmarks("error", f"sidecar {path.name} cannot be read: {exc}") from None
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != 68 or arr.shape[2] not in (2, 3):
        raise NoLandmarks("error", f"sidecar {path.name} has shape {arr.shape}; expected 68×2 (or N×68×2)")
    if not np.isfinite(arr).all():
        raise NoLandmarks("error", f"sidecar {path.name} contains NaN or infinite values")
    return arr[..., :2].astype(np.float32)


def write_sidecar(image_path: Path, landmarks: np.ndarray, fmt: str = "txt") -> Path:
    """Write 68×2 landmarks next to ``image_path`` (DECA's ``<stem>.txt`` layout, or ``.npy``)."""
    dest = Path(image_path).with_suffix(f".{fmt}")
    lm = np.asarray(landmarks, dtype=np.float32)
    with atomic_path(dest) as tmp:
        if fmt == "npy":
            with open(tmp, "wb") as fh:
                np.save(fh, lm)
        else:
            np.savetxt(tmp, lm.reshape(-1, 2), fmt="%.4f")
    return dest


class SidecarBackend(SequentialBatch):
    """Landmarks read from files; confidence 1 (they are taken as ground truth)."""

    name = "sidecar"

    def detect(self, image: np.ndarray, path: Path) -> list[Face]:
        for cand in sidecar_candidates(path):
            if cand.is_file():
                return [Face(lm, 1.0) for lm in read_sidecar(cand)]
        names = " / ".join(c.name for c in sidecar_candidates(path)[:2])
        raise NoLandmarks("no_face", f"no landmark sidecar ({names}) next to {Path(path).name}")
