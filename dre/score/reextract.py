"""Run pictures back through the photo pipeline: landmarks on the picture → DECA crop → DECA/EMOCA codes.

An edited image is judged by what the reconstruction sees in it, exactly as an album photo is: its 68
landmarks are *detected* on it (a face the detector no longer finds is a failed edit), then the
extractor crops and encodes it. Sources and the target are re-run through the very same steps at the
edit's resolution, so the comparison is like with like (see :mod:`dre.score.metrics`). A *reference*
(source or target) on which detection fails falls back to its alignment landmarks, which always exist;
an edit has no such fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from dre.errors import DreError
from dre.face3d.codes import CODE_DIMS
from dre.score.config import LANDMARK_BACKENDS

DETECT_SIZE = 256
"""Pictures smaller than this are upscaled (bicubic) for detection only; landmarks are mapped back."""


@dataclass
class Extracted:
    """Per-picture status and codes (rows of failed pictures are NaN)."""

    status: list[str]  # ok | no_face
    landmarks_from: list[str]  # detected | aligned | ""
    codes: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # extractor → code → (B, d)

    @property
    def ok(self) -> np.ndarray:
        return np.array([s == "ok" for s in self.status], dtype=bool)


def detect_landmarks(detector, images: Sequence[np.ndarray]) -> list[np.ndarray | None]:
    """(68, 2) landmarks in each picture's own pixels (the most confident face), or None: no face."""
    from dre.align.backends import NoLandmarks

    big, scales = [], []
    for im in images:
        h, w = im.shape[:2]
        f = max(1.0, DETECT_SIZE / min(h, w))
        if f > 1.0:
            im = np.asarray(Image.fromarray(im).resize((round(w * f), round(h * f)), Image.Resampling.BICUBIC))
        big.append(np.ascontiguousarray(im))
        scales.append((w / big[-1].shape[1], h / big[-1].shape[0]))
    found = detector.detect_batch(big, [Path(f"picture_{k}.png") for k in range(len(big))])
    out: list[np.ndarray | None] = []
    for faces, (sx, sy) in zip(found, scales):
        if isinstance(faces, NoLandmarks) or not faces:
            out.append(None)
            continue
        best = max(faces, key=lambda f: f.confidence)
        lm = np.asarray(best.landmarks, np.float64)
        # pixel-index coordinates: area coordinates (index + 0.5) scale with the image
        out.append(np.c_[(lm[:, 0] + 0.5) * sx - 0.5, (lm[:, 1] + 0.5) * sy - 0.5])
    return out


class Reextractor:
    """A landmark detector and the DECA/EMOCA extractors (each loaded on first use), applied to batches."""

    def __init__(self, assets: Path, *, landmarks: str, device: str = "auto", emoca_model: str | None = None,
                 batch_size: int = 16, detector=None) -> None:
        from dre.utils.device import resolve_device

        if detector is None:  # a landmark back-end that can run on generated pictures
            if landmarks not in LANDMARK_BACKENDS:
                raise DreError(f"--landmarks {landmarks!r}: use one of {', '.join(LANDMARK_BACKENDS)} (a detector; "
                               "edited pictures have no sidecar files)")
            from dre.align.runner import make_backend

            detector = make_backend(landmarks, device=device)
        self.assets = Path(assets)
        self.emoca_model = emoca_model
        self.device = resolve_device(device)
        self.detector = detector
        self.batch_size = max(1, int(batch_size))
        self._extractors: dict = {}

    def extractor(self, kind: str):
        """The ``kind`` extractor, loaded once."""
        if kind not in self._extractors:
            from dre.face3d.extractor import Extractor

            self._extractors[kind] = Extractor.from_assets(self.assets, kind, self.device, emoca_model=self.emoca_model)
        return self._extractors[kind]

    def run(self, images: Sequence[np.ndarray], kinds: Sequence[str],
            fallback: Sequence[np.ndarray | None] | None = None) -> Extracted:
        """``kinds`` codes for RGB uint8 pictures; ``fallback`` landmarks are used where detection fails."""
        import torch

        n = len(images)
        lms = detect_landmarks(self.detector, images) if n else []
        source = []  # where each picture's landmarks come from ("": no face detected, no fallback)
        for k, lm in enumerate(lms):
            if lm is None and fallback is not None and fallback[k] is not None:
                lms[k] = np.asarray(fallback[k], np.float64).reshape(68, 2)
                source.append("aligned")
            else:
                source.append("" if lm is None else "detected")
        status = ["ok" if s else "no_face" for s in source]
        res = Extracted(status, source)
        ok = [k for k in range(n) if status[k] == "ok"]
        for kind in dict.fromkeys(kinds):  # keep order, drop repeats
            ext = self.extractor(kind)
            cols = {c: np.full((n, w), np.nan, dtype=np.float64) for c, w in CODE_DIMS.items()}
            for a in range(0, len(ok), self.batch_size):
                idx = ok[a : a + self.batch_size]
                crops, _ = ext.crop([images[k] for k in idx], [lms[k] for k in idx])
                with torch.inference_mode():
                    codes = ext.encode(crops)
                for c in CODE_DIMS:
                    cols[c][idx] = getattr(codes, c).detach().to("cpu", torch.float64).reshape(len(idx), -1).numpy()
            res.codes[kind] = cols
        return res
