"""The FFHQ alignment recipe, written from its published description (not copied).

Why this exact recipe: DiffusionRig's FFHQ prior and every personal album it was trained on were aligned
this way (an oriented square "quad" derived from the eyes and mouth, then resampled to ``size²``). A
model only transfers to a personal album when the album's crops sit in the same frame, so the geometry
here must match: same quad, same margins, same supersampled resampling.

Steps (docs/reference.md): quad from eye/mouth landmarks → integer pre-shrink of huge photos →
crop around the quad with a border → reflect-pad past the image edge, blurring the padding towards a
flat median so mirrored content does not look like a face → QUAD transform to ``transform_size²`` →
Lanczos resize to ``size²``.

Coordinates: landmarks and quads are in *pixel-index* coordinates (pixel ``i`` covers ``[i-0.5,
i+0.5)``), as FAN and dlib report them. Pillow's geometric transforms work in *area* coordinates
(pixel ``i`` covers ``[i, i+1)``), hence the ``+0.5`` when the quad is handed to Pillow. One deliberate
refinement over the historical script: the quad follows the *exact* pre-shrink scale
(``new_size / old_size``, area convention) instead of a division by the integer shrink factor, so
:attr:`AlignResult.matrix` maps source landmarks onto the output without a sub-pixel drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

# iBUG-68 index ranges the recipe uses.
RIGHT_EYE = slice(36, 42)  # subject's right eye = image left
LEFT_EYE = slice(42, 48)
MOUTH_LEFT = 48  # image-left mouth corner
MOUTH_RIGHT = 54

# Supersampling factor of the QUAD transform canvas. FFHQ used 4096 for 1024² output (4×);
# DiffusionRig's script kept 4096 for 256² output (16×), which costs ~10× more time for a difference
# of ~0.1 grey level on average (max 2) against 4× on real photos (docs/alignment.md, bench_align.py).
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Quad:
    """The FFHQ quad of one face: corners TL, BL, BR, TR (4×2, source pixels) and its side length."""

    corners: np.ndarray
    size: float


@dataclass
class AlignResult:
    """An aligned face: the image and the affine map source-pixel → output-pixel (index convention)."""

    image: Image.Image  # RGB, size × size
    quad: Quad  # in source pixels
    matrix: np.ndarray  # (2, 3): out = matrix @ [x, y, 1]

    def map_points(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) source points into the aligned image (e.g. the landmarks)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return pts @ self.matrix[:, :2].T + self.matrix[:, 2]


def ffhq_quad(landmarks: np.ndarray) -> Quad:
    """The oriented square FFHQ crops to, from 68 iBUG landmarks (N≥55 × 2, pixel-index coordinates).

    Its side is the larger of 4× the eye distance and 3.6× the eye-to-mouth distance, its centre sits
    10% of the eye-to-mouth vector below the eye midpoint, and its x axis is the eye line tilted by the
    eye-mouth axis (so a face rotated in the image plane comes out upright).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < 55 or lm.shape[1] < 2:
        raise ValueError(f"expected 68×2 landmarks, got shape {lm.shape}")
    lm = lm[:, :2]
    eye_left = lm[RIGHT_EYE].mean(axis=0)
    eye_right = lm[LEFT_EYE].mean(axis=0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[MOUTH_LEFT] + lm[MOUTH_RIGHT]) / 2
    eye_to_mouth = mouth_avg - eye_avg

    # x axis: eye-to-eye blended with the eye-to-mouth vector turned by −90°.
    x = np.array([eye_to_eye[0] + eye_to_mouth[1], eye_to_eye[1] - eye_to_mouth[0]])
    norm = float(np.hypot(*x))
    if not np.isfinite(norm) or norm <= 1e-9:
        raise ValueError("degenerate landmarks: eyes and mouth coincide")
    x = x / norm * max(2.0 * float(np.hypot(*eye_to_eye)), 1.8 * float(np.hypot(*eye_to_mouth)))
    y = np.array([-x[1], x[0]])  # x turned by +90° (image y points down)
    c = eye_avg + 0.1 * eye_to_mouth
    corners = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return Quad(corners=corners, size=float(2.0 * np.hypot(*x)))


def _quad_to_output(quad_area: np.ndarray, size: int) -> np.ndarray:
    """Affine map (2×3) from area coordinates of the transformed image to output index coordinates.

    Pillow's QUAD transform samples output point (u, v) ∈ [0, T]² at
    ``nw + (ne − nw)·u/T + (sw − nw)·v/T`` (+ a bilinear term that vanishes for a parallelogram).
    Inverting that and scaling by ``size / T`` (the final Lanczos resize keeps area coordinates) gives
    output *area* coordinates; −0.5 turns them into index coordinates.
    """
    nw, sw, _se, ne = quad_area
    basis = np.stack([ne - nw, sw - nw], axis=1)  # columns: d(src)/d(u/T), d(src)/d(v/T)
    inv = np.linalg.inv(basis) * size  # src-area → out-area scale (T cancels)
    m = np.zeros((2, 3))
    m[:, :2] = inv
    m[:, 2] = -inv @ nw - 0.5
    return m


def align_face(
    image: Image.Image,
    landmarks: np.ndarray,
    size: int = 256,
    *,
    transform_size: int | None = None,
    pre_shrink: bool = True,
) -> AlignResult:
    """Apply the FFHQ recipe to one face of ``image`` (RGB) given its 68 landmarks.

    ``pre_shrink=False`` is the naive variant (no integer downscale of huge photos before cropping);
    it exists for the benchmark and gives nearly the same pixels, much more slowly on big photos.
    ``transform_size`` defaults to ``SUPERSAMPLE × size``; pass 4096 for DiffusionRig's exact canvas.
    """
    transform_size = int(transform_size or SUPERSAMPLE * size)
    if image.mode != "RGB":
        image = image.convert("RGB")
    quad0 = ffhq_quad(landmarks)
    quad = quad0.corners + 0.5  # area coordinates from here on
    qsize = quad0.size
    # Total map from source area coords to the current image's area coords: a = s * src + t.
    scale = np.array([1.0, 1.0])
    shift = np.array([0.0, 0.0])
    img = image

    # 1. Pre-shrink: an integer factor that keeps the quad ≥ 2·size px, so later steps stay small.
    shrink = int(np.floor(qsize / size * 0.5))
    if pre_shrink and shrink > 1:
        new = (max(1, int(np.rint(img.size[0] / shrink))), max(1, int(np.rint(img.size[1] / shrink))))
        s = np.array([new[0] / img.size[0], new[1] / img.size[1]])
        img = img.resize(new, Image.Resampling.LANCZOS)
        quad = quad * s
        scale, shift = scale * s, shift * s
        qsize = qsize * float(s.mean())

    # 2. Crop to the quad's bounding box plus a border (only if that is smaller than the image).
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    crop = (
        max(lo[0] - border, 0),
        max(lo[1] - border, 0),
        min(hi[0] + border, img.size[0]),
        min(hi[1] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad = quad - np.array(crop[:2])
        shift = shift - np.array(crop[:2])

    # 3. Reflect-pad where the quad leaves the image; blur the padding towards the median colour.
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    pad = np.array(
        [
            max(-lo[0] + border, 0),
            max(-lo[1] + border, 0),
            max(hi[0] - img.size[0] + border, 0),
            max(hi[1] - img.size[1] + border, 0),
        ]
    )
    if pad.max() > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        img = Image.fromarray(_pad_and_blur(np.asarray(img), pad, qsize))
        quad = quad + pad[:2]
        shift = shift + pad[:2]

    # 4. Resample the quad onto a supersampled square, then Lanczos down to the output size.
    out = img.transform(
        (transform_size, transform_size),
        Image.Transform.QUAD,
        tuple(float(v) for v in quad.flatten()),
        Image.Resampling.BILINEAR,
    )
    if size != transform_size:
        out = out.resize((size, size), Image.Resampling.LANCZOS)

    # Source index → source area (+0.5) → current area (scale, shift) → output index.
    to_out = _quad_to_output(quad, size)
    src_to_cur = np.array([[scale[0], 0.0, scale[0] * 0.5 + shift[0]], [0.0, scale[1], scale[1] * 0.5 + shift[1]]])
    matrix = to_out[:, :2] @ src_to_cur[:, :2]
    matrix = np.concatenate([matrix, (to_out[:, :2] @ src_to_cur[:, 2] + to_out[:, 2])[:, None]], axis=1)
    return AlignResult(image=out, quad=quad0, matrix=matrix)


def _pad_and_blur(arr: np.ndarray, pad: np.ndarray, qsize: float) -> np.ndarray:
    """Reflect-pad (left, top, right, bottom) and fade the padding into a blurred, flat median."""
    img = np.pad(arr.astype(np.float32), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="reflect")
    h, w, _ = img.shape
    y, x = np.ogrid[:h, :w]
    p = np.maximum(pad.astype(np.float32), 1e-6)  # padding sides are ≥ 0.3·qsize here; guard anyway
    with np.errstate(divide="ignore", invalid="ignore"):
        mask = np.maximum(
            1.0 - np.minimum(x.astype(np.float32) / p[0], (w - 1 - x).astype(np.float32) / p[2]),
            1.0 - np.minimum(y.astype(np.float32) / p[1], (h - 1 - y).astype(np.float32) / p[3]),
        )[..., None]
    blur = qsize * 0.02
    img += (gaussian_filter(img, [blur, blur, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
