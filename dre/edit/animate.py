"""Animations of a sequence: GIF and MP4 per source.

The encoders are imageio's: its Pillow plugin for the GIF and imageio-ffmpeg (which ships its own
ffmpeg binary) for the H.264 MP4. Both are asked for bit-exact output (no encoder version or time stamps
in the file, one encoding thread), so a rerun of an edit writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dre.errors import DreError

FPS = 6
"""Frames per second of the animations: a 7-frame sweep lasts a bit over a second."""

_BITEXACT = ["-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1"]


def _check(frames: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or len(arr) < 1:
        raise ValueError(f"animation frames must be (T, H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    return arr


def write_gif(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """A looping GIF (Pillow's encoder through imageio)."""
    import imageio.v3 as iio

    iio.imwrite(path, _check(frames), extension=".gif", plugin="pillow", duration=int(round(1000 / fps)), loop=0)


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """An H.264 MP4 (yuv420p, sizes padded to even) through imageio-ffmpeg's bundled ffmpeg."""
    try:
        import imageio.v2 as iio2
        import imageio_ffmpeg  # noqa: F401  (the plugin below needs it; a clear error when it is missing)
    except ImportError as exc:
        raise DreError(f"writing MP4 animations needs imageio and imageio-ffmpeg ({exc}); "
                       "pip install imageio imageio-ffmpeg (both are in the main environment)") from None
    arr = _check(frames)
    with iio2.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
                         macro_block_size=2, ffmpeg_log_level="error", output_params=_BITEXACT) as w:
        for f in arr:
            w.append_data(f)

