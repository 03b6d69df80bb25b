"""Album photo loading: every mode, EXIF orientation, and each bad-input kind → status."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dre.align.imageio import ImageLoadError, list_album, load_rgb, to_rgb


def _grad(w: int = 40, h: int = 30) -> np.ndarray:
    x = np.linspace(0, 255, w)[None, :, None]
    y = np.linspace(0, 255, h)[:, None, None]
    return np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)), np.full((h, w, 1), 60.0)], -1).astype(np.uint8)


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "CMYK", "P", "1", "I;16", "I", "F", "YCbCr"])
def test_modes_become_rgb_uint8(tmp_path: Path, mode: str) -> None:
    base = Image.fromarray(_grad())
    if mode == "I;16":
        im = Image.fromarray((np.asarray(base.convert("L")).astype(np.uint16) * 257))
    elif mode == "F":
        im = Image.fromarray(np.asarray(base.convert("L")).astype(np.float32) / 255.0)
    else:
        im = base.convert(mode)
    rgb, note = to_rgb(im)
    arr = np.asarray(rgb)
    assert rgb.mode == "RGB" and arr.dtype == np.uint8 and arr.shape == (30, 40, 3)
    assert note == f"converted from {mode}" or note.startswith(f"converted from {mode} (")
    if mode in ("L", "I;16", "F", "I"):  # grey levels survive (16-bit is rescaled, not clipped)
        grey = np.asarray(base.convert("L")).astype(int)
        assert np.abs(arr[..., 0].astype(int) - grey).max() <= 1


def test_rgba_alpha_over_white() -> None:
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 3] = 0  # fully transparent black
    rgb, _ = to_rgb(Image.fromarray(arr, "RGBA"))
    assert (np.asarray(rgb) == 255).all()


def test_palette_with_transparency(tmp_path: Path) -> None:
    im = Image.fromarray(_grad()).convert("P")
    im.info["transparency"] = 0
    p = tmp_path / "pal.png"
    im.save(p, transparency=0)
    out = load_rgb(p)
    assert out.image.mode == "RGB" and "alpha" in out.note


@pytest.mark.parametrize("suffix,fmt", [(".jpg", "JPEG"), (".png", "PNG"), (".bmp", "BMP"), (".webp", "WEBP"), (".tif", "TIFF")])
def test_formats(tmp_path: Path, suffix: str, fmt: str) -> None:
    p = tmp_path / f"x{suffix}"
    Image.fromarray(_grad()).save(p, format=fmt)
    out = load_rgb(p)
    assert out.image.size == (40, 30) and out.image.mode == "RGB"


def test_16bit_tiff(tmp_path: Path) -> None:
    p = tmp_path / "deep.tif"
    grey = np.asarray(Image.fromarray(_grad()).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(p)
    arr = load_rgb(p).array
    assert arr.dtype == np.uint8 and np.abs(arr[..., 1].astype(int) - grey).max() <= 1


def test_exif_orientation_applied(tmp_path: Path) -> None:
    """Orientation 6 (rotate 90° CW to view): a 40×30 sensor image is shown 30×40."""
    im = Image.fromarray(_grad())
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif, quality=95)
    out = load_rgb(p)
    assert out.image.size == (30, 40)
    expected = np.asarray(im.transpose(Image.Transpose.ROTATE_270)).astype(int)
    assert np.abs(out.array.astype(int) - expected).mean() < 4


def test_bad_inputs(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.fromarray(_grad(200, 200)).save(good, quality=90)
    data = good.read_bytes()
    cases = {
        "trunc.jpg": (data[: len(data) // 2], "unreadable"),
        "text.png": (b"this is not an image\n" * 10, "not_image"),
        "empty.jpg": (b"", "not_image"),
        "corrupt.png": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "unreadable"),
    }
    for name, (payload, status) in cases.items():
        p = tmp_path / name
        p.write_bytes(payload)
        with pytest.raises(ImageLoadError) as ei:
            load_rgb(p)
        assert ei.value.status == status, (name, ei.value.message)
        assert name in ei.value.message


def test_list_album_skips_sidecars_and_hidden(tmp_path: Path) -> None:
    for n in ["b.JPG", "a.png", "a.txt", "b.npy", ".DS_Store", "README.md", "c.png.txt", "c.png"]:
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    images, others = list_album(tmp_path)
    assert [p.name for p in images] == ["a.png", "b.JPG", "c.png"]
    assert [p.name for p in others] == ["README.md"]
    assert list_album(tmp_path / "a.png") == ([tmp_path / "a.png"], [])
