"""MediaPipe face mesh (478 points) mapped to the 68 iBUG points: the back-end that needs no download.

mediapipe 0.10.14 is the last release whose wheel ships the face detection and face mesh TFLite
models (Apache-2.0) behind the legacy ``solutions`` API; later releases download a ``.task`` file.

Pipeline: the *full-range* face detector finds boxes (with a score: our confidence) anywhere in the
photo, also small faces in large photos, which the mesh's own short-range detector misses; each box is
cut out as a square with context, scaled to a fixed working size and handed to ``FaceMesh`` with a
single face; its points are mapped back to the photo. When the full-range detector finds nothing the
short-range one gets a try (it is better on faces that fill the frame).

The 478 → 68 table (:data:`MESH_TO_IBUG`) picks, for each iBUG point, the mesh vertex at the same
anatomical place (eye corners, lid midpoints, lip corners, cupid's bow, ...). It is documented with
its rationale in ``docs/alignment.md``. The contour points (0–16) are the least comparable: iBUG's jaw
follows the visible outline while the mesh oval is a fixed surface curve.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from dre.align.backends import Face, SequentialBatch
from dre.errors import DreError

log = logging.getLogger(__name__)

# iBUG-68 index → MediaPipe face-mesh vertex index. Image-left = the subject's right side.
MESH_TO_IBUG: tuple[int, ...] = (
    # 0-16 jaw, image left → chin → image right
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
    # 17-21 right brow (outer → inner), 22-26 left brow (inner → outer): upper brow edge
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # 27-30 nose bridge → tip, 31-35 nostrils and columella base, image left → right
    168, 197, 5, 4, 98, 97, 2, 326, 327,
    # 36-41 right eye: outer corner, upper ×2, inner corner, lower ×2
    33, 160, 158, 133, 153, 144,
    # 42-47 left eye: inner corner, upper ×2, outer corner, lower ×2
    362, 385, 387, 263, 373, 380,
    # 48-59 outer lip: corner, upper, cupid's bow, top centre, ..., corner, lower ..., bottom centre
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    # 60-67 inner lip
    78, 81, 13, 311, 308, 402, 14, 178,
)
assert len(MESH_TO_IBUG) == 68

WORK_SIZE = 384  # face crops are scaled to this side before the mesh (its model runs at 192²)
CONTEXT = 1.8  # crop side / detector box side


def _import_mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging is noisy on stderr
    try:
        import mediapipe as mp  # optional: only the align environment installs it
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DreError(
            "--backend mediapipe needs mediapipe==0.10.14 (the last release that ships its face mesh "
            f"model); install it in this environment (envs/align.yaml) ({exc})"
        ) from None
    if not hasattr(mp, "solutions") or not hasattr(mp.solutions, "face_mesh"):
        raise DreError(
            f"mediapipe {getattr(mp, '__version__', '?')} has no legacy solutions.face_mesh; "
            "install mediapipe==0.10.14 (later releases do not ship the model)"
        )
    return mp


class MediaPipeBackend(SequentialBatch):
    """Full-range face detection → per-face crop → FaceMesh (refined, 478 points) → 68 iBUG points."""

    name = "mediapipe"

    def __init__(self, min_detection_confidence: float = 0.5, max_faces: int = 16) -> None:
        mp = _import_mediapipe()
        self._fd_full = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_detection_confidence
        )
        self._fd_short = mp.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=min_detection_confidence
        )
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.3
        )
        self.max_faces = max_faces

    def close(self) -> None:
        for obj in (self._fd_full, self._fd_short, self._mesh):
            obj.close()

    def boxes(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Face boxes (x0, y0, x1, y1 in pixels) with detector scores, best first."""
        h, w = image.shape[:2]
        arr = np.ascontiguousarray(image)
        dets = self._fd_full.process(arr).detections or self._fd_short.process(arr).detections or []
        out = []
        for d in dets:
            rb = d.location_data.relative_bounding_box
            box = np.array([rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h])
            out.append((box, float(d.score[0])))
        out.sort(key=lambda t: -t[1])
        return out[: self.max_faces]

    def mesh_in_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """478 mesh points (pixel-index coordinates of ``image``) for the face in ``box``, or None."""
        side = CONTEXT * max(box[2] - box[0], box[3] - box[1])
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0, y0 = cx - side / 2, cy - side / 2
        scale = WORK_SIZE / side
        # Square crop with context, zero outside the photo, resampled to the working size. Pillow's
        # crop fills outside the photo with black; resize's float ``box`` (area coordinates) keeps
        # sub-pixel placement, and its filters antialias when a big face is scaled down.
        ix0, iy0 = int(np.floor(x0 + 0.5)), int(np.floor(y0 + 0.5))
        ix1, iy1 = int(np.ceil(x0 + 0.5 + side)), int(np.ceil(y0 + 0.5 + side))
        region = Image.fromarray(image).crop((ix0, iy0, ix1, iy1))
        box = (x0 + 0.5 - ix0, y0 + 0.5 - iy0, x0 + 0.5 - ix0 + side, y0 + 0.5 - iy0 + side)
        crop = region.resize((WORK_SIZE, WORK_SIZE), Image.Resampling.BILINEAR, box=box)
        res = self._mesh.process(np.ascontiguousarray(np.asarray(crop)))
        if not res.multi_face_landmarks:
            return None
        pts = np.array([(p.x, p.y) for p in res.multi_face_landmarks[0].landmark], dtype=np.float64)
        # normalised → crop area coords → photo area coords → photo index coords
        pts = pts * WORK_SIZE / scale + np.array([x0 + 0.5, y0 + 0.5]) - 0.5
        return pts

    def detect(self, image: np.ndarray, path: Path) -> list[Face]:
        faces = []
        for box, score in self.boxes(image):
            mesh = self.mesh_in_box(image, box)
            if mesh is None:
                log.debug("%s: face box %s: mesh found no face", path, np.round(box).tolist())
                continue
            # Re-centre the crop on the mesh itself: the result no longer depends on where the
            # detector's box happened to sit (measured in bench/align_stability.py).
            again = self.mesh_in_box(image, _mesh_box(mesh))
            if again is not None:
                mesh = again
            faces.append(Face(mesh[list(MESH_TO_IBUG)], score))  # 478 mesh points → 68 iBUG points
        return _dedupe(faces)


def _mesh_box(mesh: np.ndarray) -> np.ndarray:
    """A detector-like square box from mesh points (the mesh spans forehead to chin, ~1.2× a box)."""
    lo, hi = mesh.min(0), mesh.max(0)
    c = (lo + hi) / 2
    half = max(hi - lo) / 2 / 1.2
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def _dedupe(faces: list[Face], iou: float = 0.5) -> list[Face]:
    """Drop faces whose landmark boxes overlap a better one (the two detectors can both fire)."""
    kept: list[Face] = []
    for f in sorted(faces, key=lambda f: -f.confidence):
        b = np.r_[f.landmarks.min(0), f.landmarks.max(0)]
        if all(_iou(b, np.r_[k.landmarks.min(0), k.landmarks.max(0)]) < iou for k in kept):
            kept.append(f)
    return kept


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
