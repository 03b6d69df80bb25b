"""Frames of a driving video: ``dre video-frames`` decodes a clip into a folder of PNG frames.

A driving sequence is a folder of frames (each aligned like a target photo, then one edit per frame). A
user's clip is usually a video file, so this step turns it into that folder: frames are kept at an even
rate (``fps``) up to ``max_frames``, so a 30 fps phone clip of a few seconds becomes a short, editable
sequence. Decoding goes through imageio's ffmpeg plugin (imageio-ffmpeg ships its own ffmpeg binary).
A file ffmpeg cannot read is a :class:`DreError` naming it; nothing is written then.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from dre.errors import DreError
from dre.safety.ownership import owned_dir
from dre.utils.cliconfig import run_arg, setting
from dre.utils.images import VIDEO_SUFFIXES, is_video_name

@dataclass
class FramesConfig:
    """What ``dre video-frames`` reads and writes (the ``video:`` section of the workflow config)."""

    video: Path = run_arg(help="the driving clip (.mp4, .mov, .avi, .mkv, .webm)")
    out: Path = run_arg(help="folder of PNG frames to write (made by this command; replaced on a rerun)")
    fps: float = setting(8.0, help="frames kept per second of video (evenly spaced; at most the clip's own rate)")
    max_frames: int = setting(48, help="at most this many frames, from the start of the clip")
    start: float = setting(0.0, help="skip this many seconds from the start of the clip")

    def validate(self) -> None:
        if self.fps <= 0 or not math.isfinite(self.fps):
            raise DreError(f"--fps must be a positive number of frames per second (got {self.fps})")
        if not 2 <= self.max_frames <= 1000:
            raise DreError(f"--max-frames must be 2 to 1000 (got {self.max_frames}): a sequence needs two frames")
        if self.start < 0:
            raise DreError(f"--start must be >= 0 seconds (got {self.start})")
        if not is_video_name(self.video):
            raise DreError(f"--video {self.video}: not a video file name (one of {', '.join(VIDEO_SUFFIXES)})")
        if not Path(self.video).is_file():
            raise DreError(f"--video {self.video}: no such file")


def _decoded(video: Path) -> tuple[float, Iterator[np.ndarray]]:
    """The clip's frame rate and an iterator over its RGB frames; DreError when ffmpeg cannot read it."""
    import imageio.v3 as iio  # lazy: `dre --help` does not load imageio

    try:
        meta = iio.immeta(video, plugin="FFMPEG")
        frames = iio.imiter(video, plugin="FFMPEG")
    except (OSError, RuntimeError, ValueError, StopIteration) as exc:
        raise DreError(f"--video {video}: ffmpeg cannot read it ({str(exc).splitlines()[0][:200]})") from exc
    rate = float(meta.get("fps") or 0)
    if not rate > 0 or not math.isfinite(rate):
        raise DreError(f"--video {video}: no frame rate in the file; re-encode it (e.g. ffmpeg -i in -r 25 out.mp4)")
    return rate, frames


def kept_indices(rate: float, fps: float, start: float, max_frames: int) -> Iterator[int]:
    """Indices of the clip's frames to keep: the first at ``start`` seconds, then one every ``1/fps`` s
    (never more often than the clip has frames), at most ``max_frames`` of them."""
    step = max(rate / fps, 1.0)
    first = start * rate
    if step == 1.0:  # every frame from the first: round once, or a start between frames (2.5) keeps 2, 4, 4, 6, 6
        first = round(first)
    for k in range(max_frames):
        yield int(round(first + k * step))


def run(cfg: FramesConfig) -> list[str]:
    """Decode ``cfg.video`` into ``cfg.out/frame_00000.png``… plus ``.frames.json`` (which frame is which; hidden, so alignment does not list it as a photo)."""
    cfg.validate()
    rate, frames = _decoded(Path(cfg.video))
    wanted = list(kept_indices(rate, cfg.fps, cfg.start, cfg.max_frames))
    kept: list[dict] = []
    with owned_dir(cfg.out, "dre video-frames", inputs=[cfg.video]) as tmp:
        try:
            for index, frame in enumerate(frames):
                if index > wanted[-1]:
                    break
                if index in wanted:
                    name = f"frame_{len(kept):05d}.png"
                    Image.fromarray(np.asarray(frame, dtype=np.uint8)[..., :3]).save(tmp / name)
                    kept.append({"file": name, "video_frame": index, "seconds": round(index / rate, 4)})
        except (OSError, RuntimeError, ValueError) as exc:
            raise DreError(f"--video {cfg.video}: decoding failed after {len(kept)} frames "
                           f"({str(exc).splitlines()[0][:200]})") from exc
        if len(kept) < 2:
            raise DreError(f"--video {cfg.video}: {len(kept)} frame(s) from {cfg.start} s at {cfg.fps} fps; a "
                           "driving sequence needs at least two (lower --start or raise --fps)")
        (tmp / ".frames.json").write_text(json.dumps(
            {"video": str(cfg.video), "video_fps": rate, "fps": cfg.fps, "frames": kept}, indent=1) + "\n")
    return [f"{cfg.out}: {len(kept)} frames of {cfg.video} ({rate:g} fps clip, kept at {min(cfg.fps, rate):g} fps)"]
