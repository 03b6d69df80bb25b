"""DECA's landmark crop, batched in torch.

The published DECA/EMOCA encoders only give sensible codes for crops made exactly as DECA's test loader
makes them, so this module reproduces that recipe bit for bit (up to float32 rounding):

1. box = min/max of the 68 landmarks; ``old_size = ((right-left) + (bottom-top)) / 2 * 1.1``, centre =
   box centre (DECA ``bbox2point`` for ``kpt68`` boxes);
2. ``size = int(old_size * 1.25)`` (the truncation is DECA's);
3. the similarity that maps the square's corners (TL, BL, TR) to (0,0), (0,223), (223,0) — skimage's
   ``estimate_transform('similarity', src, dst).params``, a 3×3 matrix taking image pixels (x, y) to crop
   pixels — and ``skimage.transform.warp(img / 255, tform.inverse, output_shape=(224, 224))``: bilinear,
   pixel centres on integers, zeros outside the image.

The three source points are always an axis-aligned square and the destination is one too, so the
least-squares similarity is exact and has the closed form used below (checked against skimage in
``tests/test_face3d_crop.py``). The warp is ``grid_sample(align_corners=True, padding_mode="zeros")``,
which is the same bilinear-with-constant-0 rule, for a whole batch at once on any device.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from skimage.transform import resize

from dre.errors import DreError

CROP_SIZE = 224
"""Side of the square DECA/EMOCA encoder input."""
KPT68_BOX_SCALE = 1.1
"""DECA enlarges a 68-landmark box by 10 % before the crop scale (``bbox2point``, type ``kpt68``)."""
CROP_SCALE = 1.25
"""DECA's ``scale`` for the square crop around the enlarged box."""


def crop_squares(landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (B, 2) and integer side lengths (B,) of DECA's crop squares, in float64.

    ``landmarks`` is (B, 68, 2) in image pixels (x, y). The side is truncated like DECA's ``int()``.
    """
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
        raise ValueError(f"landmarks must be (B, N, 2), got {tuple(landmarks.shape)}")
    lm = landmarks.to(torch.float64)
    lo = lm.amin(dim=1)
    hi = lm.amax(dim=1)
    old_size = ((hi[:, 0] - lo[:, 0]) + (hi[:, 1] - lo[:, 1])) / 2 * KPT68_BOX_SCALE
    center = (hi + lo) / 2
    size = torch.trunc(old_size * CROP_SCALE)
    return center, size


def crop_tforms(landmarks: torch.Tensor, crop_size: int = CROP_SIZE) -> torch.Tensor:
    """(B, 3, 3) float64 similarity transforms, image pixels → crop pixels (skimage ``tform.params``).

    Raises :class:`DreError` for landmarks that give an empty square (all points equal or not finite),
    which skimage would turn into a NaN transform.
    """
    center, size = crop_squares(landmarks)
    bad = ~torch.isfinite(size) | (size < 1)
    if bool(bad.any()):
        idx = bad.nonzero().flatten().tolist()
        raise DreError(f"landmarks of batch item(s) {idx} give an empty DECA crop box (degenerate or non-finite points)")
    k = (crop_size - 1) / size
    t = torch.zeros(landmarks.shape[0], 3, 3, dtype=torch.float64, device=landmarks.device)
    t[:, 0, 0] = k
    t[:, 1, 1] = k
    t[:, 0, 2] = -(center[:, 0] - size / 2) * k
    t[:, 1, 2] = -(center[:, 1] - size / 2) * k
    t[:, 2, 2] = 1
    return t


def warp_crops(images: torch.Tensor, tforms: torch.Tensor, crop_size: int = CROP_SIZE) -> torch.Tensor:
    """Warp (B, C, H, W) float images into (B, C, crop, crop) crops through image→crop ``tforms``.

    Output pixel (row r, col c) samples the input at ``inverse(tform) @ (c, r, 1)`` bilinearly, with zeros
    outside — what ``skimage.transform.warp(img, tform.inverse, output_shape=(crop, crop))`` does. The
    pixel-to-pixel map is folded with both ``align_corners=True`` normalisations (pixel centres on
    integers, ±1 on the first/last centre) into one affine ``theta`` for ``affine_grid``.
    """
    b, _, h, w = images.shape
    inv = torch.linalg.inv(tforms.to(torch.float64))
    out_to_px = torch.tensor(
        [[(crop_size - 1) / 2, 0, (crop_size - 1) / 2], [0, (crop_size - 1) / 2, (crop_size - 1) / 2], [0, 0, 1]],
        dtype=torch.float64,
        device=inv.device,
    )
    px_to_in = torch.tensor(
        [[2 / max(w - 1, 1), 0, -1], [0, 2 / max(h - 1, 1), -1], [0, 0, 1]], dtype=torch.float64, device=inv.device
    )
    theta = (px_to_in @ inv @ out_to_px)[:, :2].to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, [b, images.shape[1], crop_size, crop_size], align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


@lru_cache(maxsize=1)
def _diffusionrig_lut() -> np.ndarray:
    """uint8 → uint8 table of DiffusionRig's ``(skimage.transform.resize(img, same size) * 255).astype(uint8)``.

    DiffusionRig's loader resizes every image to 256² with skimage (a float round trip through
    ``scipy.ndimage.zoom``) and truncates back to uint8; for 24 of the 256 grey levels the round trip lands
    one ulp low and the level drops by one. For an image that is already 256² the effect depends only on
    the value, so one table reproduces it exactly; it is measured from skimage itself, not hard-coded.
    """
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = (resize(levels, levels.shape, anti_aliasing=True) * 255).astype(np.uint8)
    return out.reshape(256)
