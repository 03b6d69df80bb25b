"""The album runner behind ``dre align`` (:func:`run`): every input file gets a row, good faces get a crop.

Why it never stops on a bad file: personal albums are messy (a truncated download, a screenshot, a
group photo, a scan of a tiny face) and losing the whole run to one file wastes a GPU queue slot.
Each problem becomes a status in ``align.parquet`` (docs/ARCHITECTURE.md); the command fails only when
nothing at all is usable, and then says why for each file.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dre.align.backends import Face, LandmarkBackend, NoLandmarks
from dre.align.config import BACKENDS, AlignConfig
from dre.align.fan import FanBackend
from dre.align.ffhq import SUPERSAMPLE, align_face, ffhq_quad
from dre.align.imageio import ImageLoadError, LoadedImage, list_album, load_rgb
from dre.align.mediapipe_mesh import MediaPipeBackend
from dre.align.sidecar import SidecarBackend
from dre.errors import DreError
from dre.safety.ownership import claim_dir, owned_dir
from dre.tables import ALIGN, ALIGN_FILE
from dre.utils.images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

STATUSES = ("ok", "unreadable", "not_image", "no_face", "face_too_small", "multiple_faces_skipped", "error")


@dataclass
class Row:
    """One align.parquet row (see docs/ARCHITECTURE.md for the column meanings)."""

    source: str
    face_index: int = -1
    status: str = "error"
    message: str = ""
    landmarks: list[float] | None = None
    aligned_landmarks: list[float] | None = None
    quad: list[float] | None = None
    confidence: float = 0.0
    backend: str = ""
    output: str | None = None


@dataclass
class AlignReport:
    rows: list[Row] = field(default_factory=list)

    @property
    def counts(self) -> Counter:
        return Counter(r.status for r in self.rows)

    def summary(self) -> str:
        c = self.counts
        sources = len({r.source for r in self.rows})
        ok_sources = len({r.source for r in self.rows if r.status == "ok"})
        skipped = ", ".join(f"{s} {c[s]}" for s in STATUSES[1:] if c[s])
        return (
            f"{ok_sources} of {sources} files aligned ({c['ok']} faces)"
            + (f"; skipped: {skipped}" if skipped else "; nothing skipped")
        )


# ----------------------------------------------------------------------------------------------- names
class _Names:
    """Stable output stems: the source stem; a collision (a.jpg + a.png) falls back to 'a.png'."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, want: list[str]) -> str:
        for cand in want:
            if cand.lower() not in self.used:
                self.used.add(cand.lower())
                return cand
        n = 2
        while f"{want[0]}~{n}".lower() in self.used:
            n += 1
        self.used.add(f"{want[0]}~{n}".lower())
        return f"{want[0]}~{n}"


def _flat(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float32).reshape(-1)]


def make_backend(name: str, device: str = "auto") -> LandmarkBackend:
    """Build a back-end by its ``--backend`` name; errors name what is missing and how to fix it.

    The back-end modules are cheap to import: each loads its library (face-alignment, mediapipe) only
    when constructed.
    """
    if name == "sidecar":
        return SidecarBackend()
    if name == "mediapipe":
        return MediaPipeBackend()
    if name == "fan":
        return FanBackend(device=device)
    raise DreError(f"--backend {name!r} is not one of {', '.join(BACKENDS)}")


# ---------------------------------------------------------------------------------------------- engine
def run(cfg: AlignConfig, backend: LandmarkBackend | None = None) -> AlignReport:
    """Align (or index) every file of ``cfg.input`` into ``cfg.output``; returns the report.

    The output folder is built in a temporary sibling and replaces ``cfg.output`` only when complete,
    and only when at least one face is usable (otherwise :class:`DreError` with per-file reasons).
    """
    claim_dir(cfg.output, flag="--output", inputs=[cfg.input])  # before any work: refuse early
    images, others = list_album(cfg.input)
    if not images and not others:
        raise DreError(f"--input {cfg.input}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    backend = backend or make_backend(cfg.backend, cfg.device)

    report = AlignReport()
    for f in others:
        report.rows.append(Row(str(f), status="not_image", message=f"{f.name}: not an image suffix", backend=backend.name))

    with owned_dir(cfg.output, "dre align", flag="--output", inputs=[cfg.input]) as tmp:
        names = _Names()
        quiet = None if cfg.progress is None else not cfg.progress  # None: a bar only on a terminal
        bar = tqdm(total=len(images), desc="align", unit="img", file=sys.stderr, disable=quiet)
        for start in range(0, len(images), cfg.batch_size):
            chunk = images[start : start + cfg.batch_size]
            for rows in _process_chunk(chunk, cfg, backend, tmp, names):
                report.rows.extend(rows)
                for r in rows:
                    if r.status != "ok":
                        log.info("%s: %s: %s", r.source, r.status, r.message)
            bar.update(len(chunk))
        bar.close()
        if not report.counts["ok"]:
            details = "\n".join(f"  {Path(r.source).name}: {r.status}: {r.message}" for r in report.rows[:20])
            more = f"\n  ... and {len(report.rows) - 20} more" if len(report.rows) > 20 else ""
            raise DreError(f"no usable face in --input {cfg.input}: {report.summary()}\n{details}{more}")
        write_parquet(tmp / ALIGN_FILE, report.rows, cfg, backend.name)
    return report


def _process_chunk(
    chunk: list[Path], cfg: AlignConfig, backend: LandmarkBackend, tmp: Path, names: _Names
) -> list[list[Row]]:
    loaded: dict[int, LoadedImage] = {}
    results: list[list[Row] | None] = [None] * len(chunk)
    for i, path in enumerate(chunk):
        try:
            img = load_rgb(path)
        except ImageLoadError as exc:
            results[i] = [Row(str(path), status=exc.status, message=exc.message, backend=backend.name)]
            continue
        if cfg.already_aligned and img.image.size != (cfg.size, cfg.size):
            w, h = img.image.size
            results[i] = [
                Row(
                    str(path),
                    status="error",
                    message=f"{path.name} is {w}×{h}, but --already-aligned expects {cfg.size}×{cfg.size} (--size)",
                    backend=backend.name,
                )
            ]
            continue
        loaded[i] = img
    idx = sorted(loaded)
    try:
        detected = backend.detect_batch([loaded[i].array for i in idx], [chunk[i] for i in idx])
    except DreError:
        raise
    except Exception as exc:  # one bad batch must not stop the album: retry image by image
        log.debug("batched detection failed (%s); retrying one by one", exc)
        detected = []
        for i in idx:
            try:
                detected.extend(backend.detect_batch([loaded[i].array], [chunk[i]]))
            except DreError:
                raise
            except Exception as exc1:
                detected.append(NoLandmarks("error", f"landmark back-end failed: {type(exc1).__name__}: {exc1}"))
    for i, faces in zip(idx, detected):
        try:
            results[i] = _rows_for_image(chunk[i], loaded[i], faces, cfg, backend.name, tmp, names)
        except DreError:
            raise
        except Exception as exc:
            log.debug("alignment of %s failed", chunk[i], exc_info=True)
            results[i] = [Row(str(chunk[i]), status="error", message=f"{type(exc).__name__}: {exc}", backend=backend.name)]
    return [r for r in results if r is not None]


def _rows_for_image(
    path: Path,
    img: LoadedImage,
    faces: list[Face] | NoLandmarks,
    cfg: AlignConfig,
    backend_name: str,
    tmp: Path,
    names: _Names,
) -> list[Row]:
    src = str(path)
    if isinstance(faces, NoLandmarks):
        return [Row(src, status=faces.status, message=faces.message, backend=backend_name)]
    if not faces:
        return [Row(src, status="no_face", message=f"{path.name}: no face found by {backend_name}", backend=backend_name)]

    sized = []
    for f in faces:
        try:
            sized.append((ffhq_quad(f.landmarks), f))
        except ValueError as exc:
            log.debug("%s: dropping a face: %s", path, exc)
    if not sized:
        return [Row(src, status="error", message=f"{path.name}: degenerate landmarks", backend=backend_name)]
    sized.sort(key=lambda t: -t[0].size)
    big = [t for t in sized if t[0].size >= cfg.min_face]
    note = f"{len(sized)} faces found" if len(sized) > 1 else ""

    def face_row(k: int, quad, face: Face, status: str, message: str) -> Row:
        return Row(
            src,
            face_index=k,
            status=status,
            message=message,
            landmarks=_flat(face.landmarks),
            quad=_flat(quad.corners),
            confidence=face.confidence,
            backend=backend_name,
        )

    if not big:
        quad, face = sized[0]
        msg = f"{path.name}: face quad {quad.size:.0f} px < --min-face {cfg.min_face:g}"
        return [face_row(0, quad, face, "face_too_small", msg + (f" ({note})" if note else ""))]
    if cfg.multi_face == "skip" and len(big) > 1:
        msg = f"{path.name}: {len(big)} faces of ≥ {cfg.min_face:g} px; skipped (--multi-face skip)"
        return [Row(src, status="multiple_faces_skipped", message=msg, backend=backend_name)]

    chosen = big if (cfg.multi_face == "all" and not cfg.already_aligned) else big[:1]
    rows = []
    stem = path.stem
    for k, (quad, face) in enumerate(chosen):
        message = ""
        if len(sized) > 1 and len(chosen) == 1:
            message = f"{note}; kept the largest (--multi-face {cfg.multi_face})"
        row = face_row(k, quad, face, "ok", message)
        if cfg.already_aligned:
            row.aligned_landmarks = row.landmarks
            row.output = str(path.resolve())
            row.message = _check_prealigned(quad, cfg.size, message)
        else:
            res = align_face(img.image, face.landmarks, cfg.size, transform_size=cfg.transform_size)
            base = stem if k == 0 else f"{stem}_{k}"
            name = names.take([base, f"{base}.{path.suffix.lstrip('.').lower()}"]) + ".png"
            res.image.save(tmp / name, format="PNG")
            row.aligned_landmarks = _flat(res.map_points(face.landmarks))
            row.output = name
        if img.note and not row.message:
            row.message = img.note
        rows.append(row)
    for k, (quad, face) in enumerate(sized[len(chosen) :] if cfg.multi_face == "all" and not cfg.already_aligned else [], start=len(chosen)):
        if quad.size < cfg.min_face:
            msg = f"{path.name}: extra face quad {quad.size:.0f} px < --min-face {cfg.min_face:g}"
            rows.append(face_row(k, quad, face, "face_too_small", msg))
    return rows


def _check_prealigned(quad, size: int, message: str) -> str:
    """A warning (kept in the message) when an 'already aligned' image is not in the FFHQ frame."""
    centre = quad.corners.mean(axis=0) + 0.5
    off = float(np.hypot(*(centre - size / 2))) / size
    ratio = quad.size / size
    if off > 0.1 or not 0.75 <= ratio <= 1.33:
        warn = f"not FFHQ-aligned? quad centre off by {off:.0%} of the size, quad/size {ratio:.2f}"
        return f"{message}; {warn}" if message else warn
    return message


# --------------------------------------------------------------------------------------------- parquet
def write_parquet(dest: Path, rows: list[Row], cfg: AlignConfig, backend_name: str) -> None:
    """Write align.parquet (:data:`dre.tables.ALIGN`) with the run's settings as its metadata."""
    meta = {
        "backend": backend_name,
        "size": cfg.size,
        "already_aligned": cfg.already_aligned,
        "multi_face": cfg.multi_face,
        "min_face": cfg.min_face,
        "transform_size": cfg.transform_size or SUPERSAMPLE * cfg.size,
    }
    ALIGN.write(dest, {name: [getattr(r, name) for r in rows] for name in ALIGN.names}, meta)


__all__ = ["AlignReport", "Row", "run", "write_parquet"]
