"""Which files are photos: the one suffix list for every stage and the workflow.

Why one list: the workflow lists an album's photos as its align rule's inputs, ``dre align`` decides what
to align, ``dre extract`` and ``dre edit`` list plain aligned folders. When these disagreed, a photo could
be aligned but not tracked as an input (so editing it reran nothing), or tracked but reported
``not_image``. The suffixes are the formats the align loader reads (JPEG, PNG, BMP, WebP, TIFF); the
workflow imports this module (``workflow/rules/common.smk``), so keep it free of heavy imports.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")
"""Clip formats a driving-sequence target may have (decoded by ``dre video-frames`` before alignment)."""


def is_video_name(path: str | os.PathLike[str]) -> bool:
    """A clip by its name: the workflow decodes such a target into frames first."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_image_name(path: str | os.PathLike[str]) -> bool:
    """A photo by its name: a known suffix (any case) and not a hidden file (``.DS_Store``, ``._x.jpg``)."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The photos directly inside ``folder``, sorted by name (so outputs and rows are stable across runs)."""
    return sorted(p for p in Path(folder).iterdir() if is_image_name(p) and p.is_file())
