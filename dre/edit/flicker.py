"""Frame-to-frame flicker of a sequence, set against how much its conditions change.

``flicker(x)`` is the mean absolute difference of consecutive frames. For the pictures (scaled to
[0, 1]) it says how much the sequence jumps; for the conditions (the 9-channel rendered/normal/albedo
buffers the model saw) it says how much it *should* move. Their ratio is the report's figure: with the
same noise (or the same inversion) for every frame, only the conditions move, and a ratio that grows
means the sampler adds change of its own (flicker) on top of the rig's.
"""

from __future__ import annotations

import math

import numpy as np


def flicker(frames: np.ndarray) -> float:
    """Mean |x[t+1] − x[t]| over all consecutive pairs and all values; NaN for fewer than two frames."""
    x = np.asarray(frames, dtype=np.float64)
    if x.shape[0] < 2:
        return float("nan")
    return float(np.abs(np.diff(x, axis=0)).mean())


def sequence_flicker(images: np.ndarray, conditions: np.ndarray) -> dict[str, float]:
    """Flicker of one source's frames: ``images`` (T, 3, H, W) in [-1, 1], ``conditions`` (T, 9, H, W)."""
    img = flicker((np.asarray(images, np.float64) + 1.0) / 2.0)
    cond = flicker(conditions)
    ratio = img / cond if cond > 0 and math.isfinite(img) else float("nan")
    return {"images": round(img, 6), "conditions": round(cond, 6), "ratio": round(ratio, 4)}
