"""The album runner on a messy fixture album (sidecar landmarks: no model needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dre import align
from dre.align.sidecar import write_sidecar
from dre.errors import DreError
from dre.tables import ALIGN, ALIGN_FILE

from _align_helpers import marker_centroid, render_face, similarity, template_landmarks

EYE_R = np.array([95.5, 121.1])  # hand-computed, see test_align_ffhq.EXPECTED
EYE_L = np.array([159.5, 121.1])


def _face(w: int = 360, h: int = 320, scale: float = 60.0, angle: float = 8.0, seed: int = 0):
    lm = similarity(template_landmarks(), scale, angle, (w / 2, h / 2 - 20))
    return render_face(lm, w, h, seed=seed), lm


def build_album(root: Path) -> dict[str, str]:
    """Write the fixture album; returns {file name: expected status under --multi-face largest}."""
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str] = {}
    img, lm = _face()
    for name, fmt in [("f_jpg.jpg", "JPEG"), ("f_png.png", "PNG"), ("f_bmp.bmp", "BMP"), ("f_webp.webp", "WEBP"), ("f_tif.tiff", "TIFF")]:
        img.save(root / name, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
        write_sidecar(root / name, lm, "npy" if fmt == "PNG" else "txt")
        expect[name] = "ok"
    # Modes: grey, RGBA, CMYK, palette, 16-bit grey.
    conv = {
        "m_gray.png": img.convert("L"),
        "m_rgba.png": img.convert("RGBA"),
        "m_cmyk.jpg": img.convert("CMYK"),
        "m_pal.png": img.convert("P"),
        "m_deep16.png": Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257),
    }
    for name, im in conv.items():
        im.save(root / name)
        write_sidecar(root / name, lm)
        expect[name] = "ok"
    # EXIF orientation 6: the stored pixels are the upright photo rotated 90° CCW; the sidecar is in
    # upright (EXIF-applied) pixels, as the contract says.
    exif = Image.Exif()
    exif[0x0112] = 6
    img.transpose(Image.Transpose.ROTATE_90).save(root / "exif_rot.jpg", exif=exif, quality=95)
    write_sidecar(root / "exif_rot.jpg", lm)
    expect["exif_rot.jpg"] = "ok"
    # Two files with the same stem: stable, distinct output names.
    img.save(root / "dup.jpg", quality=95)
    img.save(root / "dup.png")
    write_sidecar(root / "dup.jpg", lm, "txt")  # dup.txt serves both (DECA naming is per stem)
    expect["dup.jpg"] = expect["dup.png"] = "ok"
    # Group photo: two faces (npy with N×68×2), the larger listed second.
    g_lm_small = similarity(template_landmarks(), 40.0, 0.0, (110.0, 140.0))
    g_lm_big = similarity(template_landmarks(), 70.0, -5.0, (400.0, 170.0))
    group = render_face(g_lm_small, 560, 340)
    group.paste(render_face(g_lm_big, 560, 340).crop((250, 0, 560, 340)), (250, 0))
    group.save(root / "group.png")
    np.save(root / "group.npy", np.stack([g_lm_small, g_lm_big]).astype(np.float32))
    expect["group.png"] = "ok"
    # Bad inputs.
    good = (root / "f_jpg.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (root / "notes.jpg").write_text("not a photo\n")
    (root / "README.md").write_text("album notes\n")
    expect.update({"truncated.jpg": "unreadable", "corrupt.png": "unreadable", "notes.jpg": "not_image", "README.md": "not_image"})
    img.save(root / "noface.png")  # no sidecar → no face
    expect["noface.png"] = "no_face"
    tiny, tiny_lm = _face(200, 200, scale=8.0)
    tiny.save(root / "tiny.png")
    write_sidecar(root / "tiny.png", tiny_lm)
    expect["tiny.png"] = "face_too_small"
    img.save(root / "badside.png")
    np.savetxt(root / "badside.txt", np.zeros((5, 2)))
    expect["badside.png"] = "error"
    return expect


@pytest.fixture(scope="module")
def album(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("album") / "photos"
    return root, build_album(root)


@pytest.fixture(scope="module")
def largest(album, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("out") / "aligned"
    align.run(align.Config(input=album[0], output=out, backend="sidecar", progress=False))
    return out, ALIGN.read(out / ALIGN_FILE)[0]


def test_every_file_has_its_status(album, largest) -> None:
    root, expect = album
    out, df = largest
    got = {Path(s).name: st for s, st in zip(df.source, df.status)}
    assert got == expect
    assert set(df.columns) == {
        "source", "face_index", "status", "message", "landmarks", "aligned_landmarks", "quad", "confidence", "backend", "output",
    }
    bad = df[df.status != "ok"]
    assert (bad.message.str.len() > 0).all()
    assert bad.output.isna().all()
    assert (df.backend == "sidecar").all()


def test_good_images_come_out_aligned(largest) -> None:
    out, df = largest
    ok = df[df.status == "ok"]
    for _, r in ok.iterrows():
        im = Image.open(out / r.output)
        assert im.size == (256, 256) and im.mode == "RGB"
        lm = np.asarray(r.landmarks, dtype=float).reshape(68, 2)
        alm = np.asarray(r.aligned_landmarks, dtype=float).reshape(68, 2)
        assert len(r.quad) == 8 and r.confidence == 1.0
        if Path(r.source).name != "group.png":
            np.testing.assert_allclose(alm[36:42].mean(0), EYE_R, atol=1e-3)
            np.testing.assert_allclose(alm[42:48].mean(0), EYE_L, atol=1e-3)
        arr = np.asarray(im)
        if not Path(r.source).name.startswith("m_"):  # colour markers survive only in colour files
            for p in (alm[36:42].mean(0), alm[42:48].mean(0)):
                np.testing.assert_allclose(marker_centroid(arr, p), p, atol=1.0)
        assert np.isfinite(lm).all()


def test_exif_rotated_matches_upright(largest) -> None:
    out, df = largest
    a = np.asarray(Image.open(out / "exif_rot.png")).astype(int)
    b = np.asarray(Image.open(out / "f_jpg.png")).astype(int)
    assert np.abs(a - b).mean() < 3.0


def test_stable_names_and_largest_policy(largest) -> None:
    out, df = largest
    outputs = dict(zip(df.source.map(lambda s: Path(s).name), df.output))
    assert outputs["dup.jpg"] == "dup.png" and outputs["dup.png"] == "dup.png.png"
    assert outputs["f_tif.tiff"] == "f_tif.png"
    g = df[df.source.str.endswith("group.png")]
    assert len(g) == 1 and "2 faces" in g.message.iloc[0]
    lm = np.asarray(g.landmarks.iloc[0]).reshape(68, 2)
    assert lm[:, 0].mean() > 300  # the larger face (on the right) was kept
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == sorted(df.output.dropna())


def test_policies_all_and_skip(album, tmp_path: Path) -> None:
    root, _ = album
    one = tmp_path / "one"
    one.mkdir()
    for n in ("group.png", "group.npy", "f_jpg.jpg", "f_jpg.txt"):
        shutil.copy(root / n, one / n)
    align.run(align.Config(input=one, output=tmp_path / "all", backend="sidecar", multi_face="all", progress=False))
    df = ALIGN.read(tmp_path / "all" / ALIGN_FILE)[0]
    g = df[df.source.str.endswith("group.png")].sort_values("face_index")
    assert g.face_index.tolist() == [0, 1] and g.output.tolist() == ["group.png", "group_1.png"]
    assert (g.status == "ok").all()
    assert np.asarray(g.landmarks.iloc[0]).reshape(68, 2)[:, 0].mean() > np.asarray(g.landmarks.iloc[1]).reshape(68, 2)[:, 0].mean()

    align.run(align.Config(input=one, output=tmp_path / "skip", backend="sidecar", multi_face="skip", progress=False))
    df = ALIGN.read(tmp_path / "skip" / ALIGN_FILE)[0]
    g = df[df.source.str.endswith("group.png")]
    assert g.status.tolist() == ["multiple_faces_skipped"] and g.face_index.tolist() == [-1]
    assert g.landmarks.isna().all()

    # --min-face above the small face: 'skip' keeps the photo (only one face counts), 'all' reports the small one
    align.run(align.Config(input=one, output=tmp_path / "skip2", backend="sidecar", multi_face="skip", min_face=200, progress=False))
    df = ALIGN.read(tmp_path / "skip2" / ALIGN_FILE)[0]
    assert df[df.source.str.endswith("group.png")].status.tolist() == ["ok"]
    align.run(align.Config(input=one, output=tmp_path / "all2", backend="sidecar", multi_face="all", min_face=200, progress=False))
    df = ALIGN.read(tmp_path / "all2" / ALIGN_FILE)[0]
    assert df[df.source.str.endswith("group.png")].status.tolist() == ["ok", "face_too_small"]


def test_rerun_is_reproducible(album, largest, tmp_path: Path) -> None:
    out1, df1 = largest
    out2 = tmp_path / "again"
    align.run(align.Config(input=album[0], output=out2, backend="sidecar", progress=False))
    df2 = ALIGN.read(out2 / ALIGN_FILE)[0]
    pd.testing.assert_frame_equal(df1.drop(columns=["landmarks", "aligned_landmarks", "quad"]), df2.drop(columns=["landmarks", "aligned_landmarks", "quad"]))
    for name in df1.output.dropna():
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name


def test_nothing_usable_fails_with_summary(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "a.jpg").write_text("nope")
    img, _ = _face()
    img.save(root / "b.png")
    with pytest.raises(DreError) as ei:
        align.run(align.Config(input=root, output=tmp_path / "out", backend="sidecar", progress=False))
    msg = str(ei.value)
    assert "no usable face" in msg and "not_image 1" in msg and "no_face 1" in msg and "a.jpg" in msg
    assert not (tmp_path / "out").exists()  # no half-made output folder


def test_input_errors(tmp_path: Path) -> None:
    with pytest.raises(DreError, match="no such file"):
        align.run(align.Config(input=tmp_path / "missing", output=tmp_path / "o", backend="sidecar"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DreError, match="no image files"):
        align.run(align.Config(input=tmp_path / "empty", output=tmp_path / "o", backend="sidecar"))
    with pytest.raises(DreError, match="is inside the input"):
        align.run(align.Config(input=tmp_path / "empty", output=tmp_path / "empty" / "out", backend="sidecar"))
    with pytest.raises(DreError, match="--multi-face"):
        align.Config(input=tmp_path, output=tmp_path / "o", multi_face="first")


def test_already_aligned_indexes_without_warping(largest, tmp_path: Path) -> None:
    out, df = largest
    pre = tmp_path / "ffhq"
    pre.mkdir()
    for _, r in df[df.status == "ok"].head(3).iterrows():
        shutil.copy(out / r.output, pre / r.output)
        write_sidecar(pre / r.output, np.asarray(r.aligned_landmarks).reshape(68, 2))
    Image.new("RGB", (300, 300)).save(pre / "wrong_size.png")
    write_sidecar(pre / "wrong_size.png", similarity(template_landmarks(), 50.0, 0.0, (150.0, 150.0)))
    idx = tmp_path / "idx"
    align.run(align.Config(input=pre, output=idx, backend="sidecar", already_aligned=True, progress=False))
    d = ALIGN.read(idx / ALIGN_FILE)[0]
    ok = d[d.status == "ok"]
    assert len(ok) == 3 and all(Path(o).is_absolute() and Path(o).exists() for o in ok.output)
    assert all(m == "" for m in ok.message)  # in the FFHQ frame: no warning
    for _, r in ok.iterrows():
        np.testing.assert_array_equal(np.asarray(r.landmarks), np.asarray(r.aligned_landmarks))
    bad = d[d.source.str.endswith("wrong_size.png")]
    assert bad.status.tolist() == ["error"] and "300×300" in bad.message.iloc[0]
    # nothing written but the index (and the marker saying dre made the folder)
    assert sorted(p.name for p in idx.iterdir()) == [".dre-output.json", "align.parquet"]
