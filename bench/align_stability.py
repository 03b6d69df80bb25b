"""How stable are MediaPipe's 68 points (and the FFHQ quads they give) on real photos?

FAN's weights cannot be downloaded on this project's machines, so the MediaPipe-vs-FAN distance
cannot be measured here (docs/alignment.md says so). What *can* be measured is whether
the MediaPipe back-end is self-consistent: the same photo flipped, rotated by a few degrees, rescaled
or re-cropped must give the same face geometry once the known transform is undone. Landmark errors are
normalised by the inter-ocular distance (NME, % of the eye-centre distance, the usual 300-W
convention); quad errors are the mean corner displacement as a fraction of the quad side, and in
output pixels at 256².

Run: python bench/align_stability.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dre.align.ffhq import ffhq_quad
from dre.align.mediapipe_mesh import MediaPipeBackend

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _align_helpers import IBUG_MIRROR, sample_photos  # noqa: E402  (test fixtures: the demo's photos)

QUAD_POINTS = [*range(36, 48), 48, 54]  # the points the FFHQ recipe uses


def _detect(be: MediaPipeBackend, arr: np.ndarray) -> np.ndarray | None:
    faces = be.detect(arr, "bench")
    if not faces:
        return None
    return max(faces, key=lambda f: ffhq_quad(f.landmarks).size).landmarks.astype(np.float64)


def _rotate(arr: np.ndarray, deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate about the image centre (counter-clockwise on screen); returns image and the 2×3 map."""
    h, w = arr.shape[:2]
    im = Image.fromarray(arr).rotate(deg, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
    a = np.deg2rad(deg)
    c = np.array([w / 2, h / 2])  # area-coordinate centre
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    m = np.zeros((2, 3))
    m[:, :2] = rot
    m[:, 2] = c - rot @ c + (rot @ [0.5, 0.5] - [0.5, 0.5])  # index coords: shift by 0.5 in and out
    return np.asarray(im), m


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _metrics(ref: np.ndarray, got: np.ndarray) -> tuple[float, float, float, float]:
    iod = float(np.hypot(*(ref[42:48].mean(0) - ref[36:42].mean(0))))
    err = np.hypot(*(got - ref).T)
    qr, qg = ffhq_quad(ref), ffhq_quad(got)
    qerr = float(np.hypot(*(qr.corners - qg.corners).T).mean()) / qr.size
    return 100 * err.mean() / iod, 100 * err[QUAD_POINTS].mean() / iod, 100 * qerr, qerr * 256


def main() -> None:
    be = MediaPipeBackend()
    rows = []
    for name, arr in sample_photos().items():
        h, w = arr.shape[:2]
        base = _detect(be, arr)
        assert base is not None, name
        cases = {}
        flipped = _detect(be, np.ascontiguousarray(arr[:, ::-1]))
        if flipped is not None:
            un = flipped[list(IBUG_MIRROR)].copy()
            un[:, 0] = w - 1 - un[:, 0]
            cases["h-flip"] = un
        for deg in (-10, -5, 5, 10):
            rim, m = _rotate(arr, deg)
            got = _detect(be, rim)
            if got is not None:
                minv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
                cases[f"rot {deg:+d}°"] = _apply(minv, got)
        for s in (0.5, 0.75, 1.5):
            sim = np.asarray(Image.fromarray(arr).resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS))
            got = _detect(be, sim)
            if got is not None:
                sx, sy = sim.shape[1] / w, sim.shape[0] / h
                cases[f"scale ×{s}"] = (got + 0.5) / [sx, sy] - 0.5
        off = (37, 23)
        got = _detect(be, np.ascontiguousarray(arr[off[1] :, off[0] :]))
        if got is not None:
            cases["crop shift"] = got + off
        for case, got in cases.items():
            rows.append((name, case, *_metrics(base, got)))
        missing = {"h-flip", "rot -10°", "rot -5°", "rot +5°", "rot +10°", "scale ×0.5", "scale ×0.75", "scale ×1.5", "crop shift"} - set(cases)
        for case in sorted(missing):
            rows.append((name, case + " (no face)", np.nan, np.nan, np.nan, np.nan))
    be.close()
    print(f"{'photo':<13} {'case':<18} {'NME68 %':>8} {'NME eyes+mouth %':>17} {'quad err % side':>16} {'quad err px@256':>16}")
    for r in rows:
        print(f"{r[0]:<13} {r[1]:<18} {r[2]:8.2f} {r[3]:17.2f} {r[4]:16.2f} {r[5]:16.2f}")
    for photo in dict.fromkeys(r[0] for r in rows):
        a = np.array([r[2:] for r in rows if r[0] == photo], dtype=float)
        stats = " ".join(f"{np.nanmean(a[:, i]):6.2f}/{np.nanmax(a[:, i]):<6.2f}" for i in range(4))
        print(f"{photo:<13} {'mean/max':<18} {stats}")
    a = np.array([r[2:] for r in rows], dtype=float)
    print(f"{'mean':<13} {'':<18} {np.nanmean(a[:, 0]):8.2f} {np.nanmean(a[:, 1]):17.2f} {np.nanmean(a[:, 2]):16.2f} {np.nanmean(a[:, 3]):16.2f}")
    print(f"{'max':<13} {'':<18} {np.nanmax(a[:, 0]):8.2f} {np.nanmax(a[:, 1]):17.2f} {np.nanmax(a[:, 2]):16.2f} {np.nanmax(a[:, 3]):16.2f}")


if __name__ == "__main__":
    main()
