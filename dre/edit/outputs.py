"""Writing an edit folder: per-edit PNGs, the at-a-glance grid and edited buffers (the table: dre.tables).

Everything here is deterministic so that a rerun with the same seed is byte-identical: PNGs carry no
timestamps, the buffer archives are zip files with fixed member dates, and the table is written in a
fixed row order. The caller writes into a temporary folder (``dre.safety.atomic.atomic_dir``), so a
killed run never leaves a half-written edit folder behind.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GRID_NAME = "grid.png"
SUMMARY_NAME = "summary.json"
BUFFER_DIR = "buffers"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date zip can store: no wall-clock leaks into the bytes


def to_uint8(images: np.ndarray) -> np.ndarray:
    """(B,3,H,W) or (3,H,W) floats in [-1, 1] → HWC uint8 (rounded, clipped), as a person sees them."""
    x = np.asarray(images, dtype=np.float32)
    x = np.clip((x + 1.0) * 127.5, 0.0, 255.0)
    x = np.rint(x).astype(np.uint8)
    return np.moveaxis(x, -3, -1)


def unit_to_uint8(images: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (e.g. the rendered buffer, which is unclamped) → HWC uint8, clipped for display."""
    return to_uint8(np.asarray(images, dtype=np.float32) * 2.0 - 1.0)


def save_png(path: Path, image_hwc: np.ndarray) -> None:
    """An RGB PNG with no metadata chunks (no time stamp), so equal pixels give equal bytes."""
    Image.fromarray(np.ascontiguousarray(image_hwc), mode="RGB").save(path, format="PNG", optimize=False)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 at ``size``² (Lanczos, as the edit feeds sources to the model); unchanged if already."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def make_grid(
    cells: Sequence[Sequence[np.ndarray]],
    col_labels: Sequence[str],
    row_labels: Sequence[str],
    *,
    cell: int,
    banner: str = "",
    pad: int = 2,
    marks: Mapping[tuple[int, int], str] | None = None,
    notes: Mapping[tuple[int, int], str] | None = None,
) -> np.ndarray:
    """A labelled image grid: one row per source, one column per kind of picture.

    Column labels head the columns and each row is labelled with its source's stem, so a person can
    tell which picture is which without a legend. ``banner`` (e.g. the synthetic-assets warning) is
    printed above everything, so the grid can never be mistaken for a real result. ``marks`` frames
    the cells at (row, column) in red with a short reason on a red strip (flagged edits: ``noisy``,
    ``no face``); ``notes`` writes a short line at the foot of a cell (e.g. its transfer score).
    """
    n_rows, n_cols = len(cells), len(col_labels)
    if any(len(r) != n_cols for r in cells) or len(row_labels) != n_rows:
        raise ValueError("grid: every row needs one cell per column label and one row label")
    font_px = max(10, min(16, cell // 8))
    font = _font(font_px)
    label_h = font_px + 6
    row_w = max([0] + [int(font.getlength(t)) for t in row_labels]) + 8
    banner_h = label_h if banner else 0
    width = row_w + n_cols * (cell + pad) + pad
    height = banner_h + label_h + n_rows * (cell + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if banner:
        draw.rectangle([0, 0, width, banner_h - 1], fill=(200, 0, 0))
        draw.text((4, 2), banner, fill=(255, 255, 255), font=font)
    top = banner_h + label_h
    for c, text in enumerate(col_labels):
        x = row_w + pad + c * (cell + pad)
        draw.text((x + 2, banner_h + 2), text, fill=(0, 0, 0), font=font)
    for r, row in enumerate(cells):
        y = top + pad + r * (cell + pad)
        draw.text((4, y + cell // 2 - font_px // 2), row_labels[r], fill=(0, 0, 0), font=font)
        for c, img in enumerate(row):
            x = row_w + pad + c * (cell + pad)
            canvas.paste(Image.fromarray(np.ascontiguousarray(resize_square(img, cell))), (x, y))
            note = (notes or {}).get((r, c))
            if note:
                draw.rectangle([x, y + cell - label_h, x + cell - 1, y + cell - 1], fill=(0, 0, 0))
                draw.text((x + 2, y + cell - label_h + 2), note, fill=(255, 255, 255), font=font)
            mark = (marks or {}).get((r, c))
            if mark is not None:
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], outline=(230, 0, 0), width=3)
                draw.rectangle([x, y, x + cell - 1, y + label_h - 1], fill=(230, 0, 0))
                draw.text((x + 3, y + 2), mark, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.load``-compatible .npz with fixed member dates (numpy's own writer stamps the wall clock)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def write_json(path: Path, data: Mapping[str, object]) -> None:
    """Pretty, key-sorted JSON (stable bytes for equal content)."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
