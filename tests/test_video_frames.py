"""`dre video-frames`: a driving clip becomes a folder of frames at an even rate, or a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from dre.edit.video import FramesConfig, kept_indices, run
from dre.errors import DreError


def _clip(path: Path, n: int = 20, fps: int = 10) -> Path:
    """A clip whose frame k is a flat grey of level 10·k (so a decoded frame says which one it was)."""
    frames = np.stack([np.full((32, 32, 3), 10 * k, dtype=np.uint8) for k in range(n)])
    iio.imwrite(path, frames, fps=fps, plugin="FFMPEG", macro_block_size=1)
    return path


def test_frames_are_kept_at_the_asked_rate(tmp_path: Path) -> None:
    clip = _clip(tmp_path / "clip.mp4")
    out = tmp_path / "frames"
    run(FramesConfig(video=clip, out=out, fps=5.0, max_frames=4))
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [f"frame_{k:05d}.png" for k in range(4)]
    manifest = json.loads((out / ".frames.json").read_text())
    assert [f["video_frame"] for f in manifest["frames"]] == [0, 2, 4, 6] and manifest["video_fps"] == 10
    levels = np.array([np.asarray(Image.open(out / n)).mean() for n in names])
    assert np.abs(levels - [0, 20, 40, 60]).max() < 4  # greys 10 apart; YUV coding moves them by 1-2
    # a rerun replaces its own folder; --start skips into the clip
    run(FramesConfig(video=clip, out=out, fps=10.0, max_frames=3, start=1.0))
    assert [f["video_frame"] for f in json.loads((out / ".frames.json").read_text())["frames"]] == [10, 11, 12]


def test_never_more_often_than_the_clip_has_frames() -> None:
    assert list(kept_indices(rate=10, fps=30, start=0, max_frames=3)) == [0, 1, 2]
    assert list(kept_indices(rate=30, fps=8, start=0.5, max_frames=3)) == [15, 19, 22]
    # a start half-way between two frames, at the clip's own rate: consecutive frames, none dropped or repeated
    assert list(kept_indices(rate=25, fps=30, start=0.1, max_frames=6)) == [2, 3, 4, 5, 6, 7]


def test_bad_clips_and_folders_are_refused_with_nothing_written(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    with pytest.raises(DreError, match="broken.mp4: ffmpeg cannot read it"):
        run(FramesConfig(video=broken, out=tmp_path / "a"))
    assert not (tmp_path / "a").exists()
    clip = _clip(tmp_path / "clip.mp4", n=5)
    with pytest.raises(DreError, match="needs at least two"):
        run(FramesConfig(video=clip, out=tmp_path / "b", start=10.0))
    assert not (tmp_path / "b").exists()
    with pytest.raises(DreError, match="not a video file name"):
        run(FramesConfig(video=tmp_path / "photo.jpg", out=tmp_path / "c"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("a user's file")
    with pytest.raises(DreError, match="mine"):
        run(FramesConfig(video=clip, out=mine))
    assert (mine / "keep.txt").read_text() == "a user's file"
