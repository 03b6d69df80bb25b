"""Alignment test fixtures: a drawn face with exactly known landmarks, and real public-domain photos.

Why a drawn face: real photos with trusted 68-point annotations cannot ship with the repository, yet the
recipe's geometry and the album runner must be checked against known answers. A cartoon face drawn *from*
a landmark set is its own ground truth; a similarity transform of the landmarks (rotation, scale,
translation) gives photos whose expected aligned result is computable by hand.

The photos are the demo's package-shipped portraits (:data:`dre.demo.SOURCES`: ``skimage.data.astronaut()``,
``skimage.data.camera()``, matplotlib's ``grace_hopper.jpg``), real faces with no download. The benches
import this module too (``bench/bench_align.py``, ``bench/align_stability.py``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from dre.demo import SOURCES


def sample_photos() -> dict[str, np.ndarray]:
    """name → RGB uint8 array of each demo source photo (uncropped)."""
    return {name: src.loader() for name, src in SOURCES.items()}


# iBUG-68 index of each point's mirror image (left ↔ right), for flip tests.
IBUG_MIRROR: tuple[int, ...] = (
    *range(16, -1, -1),
    26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
    27, 28, 29, 30,
    35, 34, 33, 32, 31,
    45, 44, 43, 42, 47, 46,
    39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,
    64, 63, 62, 61, 60, 67, 66, 65,
)
assert len(IBUG_MIRROR) == 68 and sorted(IBUG_MIRROR) == list(range(68))


def template_landmarks() -> np.ndarray:
    """68 iBUG points of an upright face in a unit frame: eye midpoint at (0, 0), eyes 1 apart.

    Eye centres (means of 36–41 / 42–47) are exactly (∓0.5, 0); mouth corners 48/54 at (∓0.4, 1.0),
    so by hand: eye_to_eye = (1, 0), eye_to_mouth = (0, 1), the FFHQ quad half-side is
    max(2·1, 1.8·1) = 2 and its centre is (0, 0.1).
    """
    lm = np.zeros((68, 2))
    t = np.linspace(-np.pi * 0.95, -np.pi * 0.05, 17)  # jaw: lower half of an ellipse, image left → right
    lm[0:17] = np.c_[np.cos(t), 0.25 - 1.25 * np.sin(t)]
    lm[17:22] = np.c_[np.linspace(-0.9, -0.15, 5), [-0.35, -0.45, -0.48, -0.45, -0.38]]
    lm[22:27] = np.c_[-lm[17:22, 0][::-1], lm[17:22, 1][::-1]]
    lm[27:31] = np.c_[np.zeros(4), np.linspace(0.0, 0.55, 4)]
    lm[31:36] = np.c_[np.linspace(-0.2, 0.2, 5), [0.62, 0.66, 0.68, 0.66, 0.62]]
    ang = np.deg2rad([180, 120, 60, 0, -60, -120])  # outer corner, upper ×2, inner corner, lower ×2
    eye = np.c_[0.2 * np.cos(ang), -0.09 * np.sin(ang)]
    lm[36:42] = eye + [-0.5, 0.0]
    lm[42:48] = np.c_[-eye[[3, 2, 1, 0, 5, 4], 0], eye[[3, 2, 1, 0, 5, 4], 1]] + [0.5, 0.0]
    lm[48:60, 1] = 1.0 + np.r_[0, -0.1, -0.14, -0.12, -0.14, -0.1, 0, 0.1, 0.15, 0.16, 0.15, 0.1]
    lm[48:60, 0] = [-0.4, -0.27, -0.13, 0, 0.13, 0.27, 0.4, 0.27, 0.13, 0, -0.13, -0.27]
    lm[60:68] = np.c_[[-0.3, -0.12, 0, 0.12, 0.3, 0.12, 0, -0.12], 1.0 + np.r_[0, -0.04, -0.05, -0.04, 0, 0.04, 0.05, 0.04]]
    return lm


def similarity(landmarks: np.ndarray, scale: float, angle_deg: float, translation: tuple[float, float]) -> np.ndarray:
    """Rotate by ``angle_deg`` (counter-clockwise on screen), scale, translate: x' = s·R·x + t."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # image y points down
    return np.asarray(landmarks) @ (scale * rot).T + np.asarray(translation)


def render_face(landmarks: np.ndarray, width: int, height: int, *, seed: int = 0, markers: bool = True) -> Image.Image:
    """Draw a face from its landmarks on a textured background (RGB). ``markers`` puts bright dots
    at the eye centres and mouth corners so tests can find them again after alignment."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    bg = 90 + 40 * np.sin(xx / 37.0) * np.cos(yy / 53.0) + rng.normal(0, 4, (height, width))
    img = Image.fromarray(np.clip(np.stack([bg, bg * 0.9, bg * 1.1], -1), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    lm = np.asarray(landmarks, dtype=float)
    jaw = [tuple(p) for p in lm[0:17]]
    d.polygon(jaw + [tuple(lm[26] + (lm[26] - lm[30]) * 0.6), tuple(lm[17] + (lm[17] - lm[30]) * 0.6)], fill=(205, 170, 140))
    for sl, col in ((slice(36, 42), (60, 40, 30)), (slice(42, 48), (60, 40, 30)), (slice(48, 60), (170, 60, 60))):
        d.polygon([tuple(p) for p in lm[sl]], fill=col)
    d.line([tuple(p) for p in lm[17:22]], fill=(80, 50, 30), width=3)
    d.line([tuple(p) for p in lm[22:27]], fill=(80, 50, 30), width=3)
    d.line([tuple(p) for p in lm[27:31]] + [tuple(p) for p in lm[31:36]], fill=(150, 110, 90), width=2)
    if markers:
        arr = np.asarray(img).astype(np.float64)
        eye_sz = float(np.hypot(*(lm[42:48].mean(0) - lm[36:42].mean(0))))
        sigma = max(1.0, 0.03 * eye_sz)
        r = int(np.ceil(4 * sigma))
        for p in (lm[36:42].mean(0), lm[42:48].mean(0), lm[48], lm[54]):
            x0, y0 = max(int(p[0]) - r, 0), max(int(p[1]) - r, 0)
            x1, y1 = min(int(p[0]) + r + 2, width), min(int(p[1]) + r + 2, height)
            if x1 <= x0 or y1 <= y0:
                continue
            py, px = np.mgrid[y0:y1, x0:x1]
            g = np.exp(-((px - p[0]) ** 2 + (py - p[1]) ** 2) / (2 * sigma**2))[..., None]
            arr[y0:y1, x0:x1] = arr[y0:y1, x0:x1] * (1 - g) + np.array([255.0, 255.0, 0.0]) * g
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    return img


def marker_centroid(image: np.ndarray, near: np.ndarray, radius: int = 6) -> np.ndarray:
    """Sub-pixel centre of a yellow marker near ``near`` (x, y) in an RGB array (tests)."""
    arr = np.asarray(image).astype(np.float64)
    yellow = np.clip((arr[..., 0] + arr[..., 1]) / 2 - arr[..., 2] - 60, 0, None)
    x0, y0 = np.round(near).astype(int)
    ys, xs = slice(max(y0 - radius, 0), y0 + radius + 1), slice(max(x0 - radius, 0), x0 + radius + 1)
    win = yellow[ys, xs]
    gy, gx = np.mgrid[ys, xs]
    if win.sum() <= 0:
        return np.array([np.nan, np.nan])
    return np.array([(win * gx).sum() / win.sum(), (win * gy).sum() / win.sum()])

