"""Reading album photos robustly: every failure becomes a classified, per-file status.

Albums are whatever a phone, a scanner or a web page produced: EXIF-rotated JPEGs, grayscale scans,
RGBA PNGs, CMYK print files, palette GIF-style PNGs, 16-bit TIFFs, truncated downloads and files that
are not images at all. Each must either become a plain RGB uint8 array in upright orientation or a
status with a message, never an exception that stops the album.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dre.align.backends import NoLandmarks
from dre.align.sidecar import sidecar_candidates
from dre.errors import DreError
from dre.utils.images import is_image_name


@dataclass
class LoadedImage:
    """An upright RGB photo (EXIF orientation applied) and how it was converted."""

    image: Image.Image
    note: str = ""  # e.g. "converted from CMYK"

    @property
    def array(self) -> np.ndarray:
        return np.asarray(self.image)


class ImageLoadError(NoLandmarks):
    """A file that cannot become an RGB image (so it has no landmarks); ``status`` is the align.parquet status."""


def load_rgb(path: str | Path) -> LoadedImage:
    """Open ``path`` as an upright RGB image or raise :class:`ImageLoadError` (unreadable / not_image)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Huge photos are legitimate album content; bombs past 2× the limit still raise below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                fmt = im.format or "?"
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)  # animated WebP / multi-page TIFF: the first frame
                im.load()
                try:
                    upright = ImageOps.exif_transpose(im)
                except Exception:  # a broken EXIF block must not lose an otherwise fine photo
                    upright = im.copy()
                rgb, note = to_rgb(upright)
    except UnidentifiedImageError:
        kind = sniff_image_kind(path)
        if kind:  # the header says image, the body is broken: a corrupt file, not a stray document
            raise ImageLoadError("unreadable", f"{path.name}: corrupt {kind} data (header only)") from None
        raise ImageLoadError("not_image", f"{path.name}: not an image file Pillow can identify") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError("unreadable", f"{path.name}: refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated downloads ("image file is truncated"), corrupt data, permission errors.
        raise ImageLoadError("unreadable", f"{path.name}: cannot decode ({type(exc).__name__}: {exc})") from None
    if rgb.size[0] < 1 or rgb.size[1] < 1:
        raise ImageLoadError("unreadable", f"{path.name}: empty image")
    note = f"{fmt} {note}".strip() if note else ""
    return LoadedImage(image=rgb, note=note)


_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF8", "GIF"),
)


def sniff_image_kind(path: Path) -> str:
    """The image format a file's magic bytes claim ("" if none): tells corrupt images from non-images."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return ""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return ""


def to_rgb(im: Image.Image) -> tuple[Image.Image, str]:
    """Convert any Pillow mode to 8-bit RGB; returns the image and a note naming the source mode.

    Transparency is composited over white (a transparent background is not part of the face);
    16/32-bit and float modes are rescaled by their nominal range, not clipped, so a 16-bit scan keeps
    its contrast.
    """
    mode = im.mode
    if mode == "RGB":
        return im, ""
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB"), f"converted from {mode} (alpha over white)"
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im).astype(np.float64)
        if mode == "F":
            top = 1.0 if arr.size and np.nanmax(arr) <= 1.0 else 255.0
        elif mode == "I" and arr.size and arr.max() <= 255 and arr.min() >= 0:
            top = 255.0
        else:
            top = 65535.0
        arr = np.clip(np.nan_to_num(arr) / top * 255.0, 0, 255)
        gray = Image.fromarray(np.rint(arr).astype(np.uint8))
        return gray.convert("RGB"), f"converted from {mode} (scaled to 8 bit)"
    return im.convert("RGB"), f"converted from {mode}"


def list_album(input_path: str | Path) -> tuple[list[Path], list[Path]]:
    """The album's image files (sorted) and its other, non-sidecar files (reported as not_image).

    ``input_path`` is a folder (flat, like the workflow's album folders) or a single file. Hidden files
    and landmark sidecars (``<stem>.txt`` / ``<stem>.npy`` / ``<name>.txt`` beside an image) are not
    album entries.
    """
    p = Path(input_path)
    if p.is_file():
        return [p], []
    if not p.is_dir():
        raise DreError(f"--input {p}: no such file or folder")
    files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
    images = [f for f in files if is_image_name(f)]
    sidecar_names = {c.name for f in images for c in sidecar_candidates(f)}
    others = [f for f in files if not is_image_name(f) and f.name not in sidecar_names]
    return images, others
