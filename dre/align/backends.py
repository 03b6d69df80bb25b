"""One interface for every landmark back-end: 68 iBUG points per face plus a confidence.

Why one interface: the album runner, the FFHQ recipe and the tests must not care where landmarks come
from. FAN (the default, what DECA uses), MediaPipe's face mesh (ships its model, works offline) and
sidecar files (precomputed landmarks) all return :class:`Face` lists in source-image pixel-index
coordinates. This module is the interface only; the album runner (:mod:`dre.align.runner`) picks the
back-end, so the back-ends import this module and it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np


@dataclass
class Face:
    """One detected face: (68, 2) float32 (x, y) in source pixels and a confidence in [0, 1]."""

    landmarks: np.ndarray
    confidence: float

    def __post_init__(self) -> None:
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(68, 2)
        self.confidence = float(np.clip(self.confidence, 0.0, 1.0))


class NoLandmarks(Exception):
    """A per-image reason for having no landmarks other than 'no face found' (e.g. a bad sidecar)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LandmarkBackend(Protocol):
    """What the album runner needs from a back-end."""

    name: str

    def detect(self, image: np.ndarray, path: Path) -> list[Face]:
        """Faces in ``image`` (H, W, 3 RGB uint8, upright) read from ``path``; [] when none."""
        ...

    def detect_batch(self, images: Sequence[np.ndarray], paths: Sequence[Path]) -> list[list[Face] | NoLandmarks]:
        """Per-image :meth:`detect`, batched where the back-end can; exceptions are returned per image."""
        ...


class SequentialBatch:
    """Mixin: ``detect_batch`` as a loop over ``detect`` (for back-ends without batched inference)."""

    def detect_batch(self, images: Sequence[np.ndarray], paths: Sequence[Path]) -> list[list[Face] | NoLandmarks]:
        out: list[list[Face] | NoLandmarks] = []
        for image, path in zip(images, paths):
            try:
                out.append(self.detect(image, path))  # type: ignore[attr-defined]
            except NoLandmarks as exc:
                out.append(exc)
        return out
