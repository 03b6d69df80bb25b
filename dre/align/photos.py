"""Public-domain face photos shipped inside installed packages (never committed as files).

``skimage.data.astronaut()`` (NASA, public domain), ``skimage.data.camera()`` (CC0) and matplotlib's
``grace_hopper.jpg`` (US Navy, public domain) give tests and benchmarks real faces with no download.
"""

from __future__ import annotations

import matplotlib.cbook as cbook
import numpy as np
from PIL import Image
from skimage import data


def sample_photos() -> dict[str, np.ndarray]:
    """name → RGB uint8 array."""
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        hopper = np.asarray(im.convert("RGB"))
    return {
        "astronaut": np.ascontiguousarray(data.astronaut()),
        "camera": np.ascontiguousarray(np.repeat(data.camera()[..., None], 3, axis=2)),
        "grace_hopper": hopper,
    }


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
