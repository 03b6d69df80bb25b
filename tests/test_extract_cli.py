"""`dre extract` on an album of synthetic-face photos, FaceModel and Extractor on synthetic assets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dre.errors import DreError
from dre.face3d.codes import CODE_DIMS, CODE_ORDER, FlameCodes
from dre.face3d.crop import crop_tforms
from dre.tables import ALIGN, ALIGN_FILE, CODES
from dre.utils.synthetic import BANNER

from face3d_album import IMAGE_SIZE, image_tform, make_album, random_codes


@pytest.fixture(scope="module")
def face_model(synthetic_assets: Path):
    from dre.face3d.face_model import FaceModel

    return FaceModel.from_assets(synthetic_assets)


@pytest.fixture(scope="module")
def extractors(synthetic_assets: Path) -> dict:
    from dre.face3d.extractor import Extractor

    return {k: Extractor.from_assets(synthetic_assets, k) for k in ("deca", "emoca")}


@pytest.fixture(scope="module")
def album(tmp_path_factory: pytest.TempPathFactory, face_model) -> Path:
    folder = tmp_path_factory.mktemp("album")
    make_album(folder, face_model, n=3, seed=1)
    return folder


def _read(path: Path) -> tuple[pd.DataFrame, dict]:
    return CODES.read(path)


# --------------------------------------------------------------------------------------------- FaceModel
def test_face_model_center_and_recentring(face_model) -> None:
    codes = random_codes(2, 3)
    out = face_model.flame(codes.shape, codes.exp, codes.pose)
    lm = out.landmarks2d
    eye = (lm[:, 36:42].mean(1) + lm[:, 42:48].mean(1)) / 2
    mouth = (lm[:, 48] + lm[:, 54]) / 2
    torch.testing.assert_close(face_model.ffhq_center(codes), eye + 0.1 * (mouth - eye))
    torch.testing.assert_close(face_model.vertices(codes), out.vertices)

    tf = image_tform(2, 64)
    plain = face_model.render(codes, tf, 64)
    same = face_model.render(codes, tf, 64, center=face_model.ffhq_center(codes))
    assert np.abs(plain.condition().numpy() - same.condition().numpy()).max() < 1e-5
    # shifting the centre by dx (world) moves the silhouette by s·dx·112 crop px = s·dx·112·(64/224) px
    dx = 0.01
    moved = face_model.render(codes, tf, 64, center=face_model.ffhq_center(codes) + torch.tensor([dx, 0.0, 0.0]))
    cols = torch.arange(64, dtype=torch.float32)

    def cx(alpha: torch.Tensor) -> torch.Tensor:
        return (alpha[:, 0].sum(1) * cols).sum(-1) / alpha[:, 0].sum((1, 2))

    expect = codes.cam[:, 0] * dx * 112 * 64 / 224
    shift = cx(moved.alpha) - cx(plain.alpha)
    assert torch.allclose(shift, expect, atol=0.6), (shift, expect)


def test_face_model_buffers_are_well_formed(face_model) -> None:
    codes = random_codes(2, 4)
    buf = face_model.render(codes, image_tform(2, 96), 96)
    assert buf.condition().shape == (2, 9, 96, 96)
    assert torch.isfinite(buf.condition()).all()
    cover = buf.alpha.mean().item()
    assert 0.2 < cover < 0.95
    n = buf.normal.norm(dim=1)[buf.alpha[:, 0] > 0]
    assert n.max() <= 1 + 1e-5 and n.mean() > 0.95
    assert face_model.synthetic and set(face_model.checksums) >= {"generic_model.pkl", "FLAME_texture.npz"}


def test_face_model_reports_missing_assets(tmp_path: Path) -> None:
    from dre.face3d.face_model import FaceModel

    with pytest.raises(DreError):
        FaceModel.from_assets(tmp_path / "nope")
    with pytest.raises(DreError, match="generic_model.pkl"):
        FaceModel.from_assets(tmp_path)


# --------------------------------------------------------------------------------------------- Extractor
def test_extractor_crop_and_batch_invariance(extractors: dict, album: Path) -> None:
    from PIL import Image

    ext = extractors["deca"]
    df = ALIGN.read(album / ALIGN_FILE)[0]
    imgs = [np.asarray(Image.open(album / o)) for o in df["output"]]
    lms = [np.asarray(v).reshape(68, 2) for v in df["aligned_landmarks"]]
    crops, tf = ext.crop(imgs, lms)
    ref_tf = crop_tforms(torch.from_numpy(np.stack(lms)).double()).float()
    torch.testing.assert_close(tf, ref_tf)
    all_codes = ext.encode(crops)
    one = FlameCodes.cat([ext.encode(crops[i : i + 1]) for i in range(len(imgs))])
    assert np.abs(all_codes.flat().numpy() - one.flat().numpy()).max() < 1e-3
    with pytest.raises(DreError, match="68 finite"):
        ext.crop(imgs[:1], [np.full((68, 2), np.nan)])


# ------------------------------------------------------------------------------------------- dre extract
def test_extract_cli_album(synthetic_assets: Path, album: Path, tmp_path: Path, dre_cmd, cli_env, face_model) -> None:
    work = tmp_path / "album"
    shutil.copytree(album, work)
    (work / "face02.png").write_bytes(b"not a png")  # unreadable
    (work / "face01.png").unlink()  # missing
    out = tmp_path / "codes" / "album.deca.parquet"
    cmd = [*dre_cmd, "extract", "--images", str(work), "--extractor", "deca", "--assets", str(synthetic_assets),
           "--out", str(out), "--batch-size", "2", "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert BANNER in res.stderr
    assert "1 ok" in res.stdout
    df, meta = _read(out)
    assert list(df["status"]) == ["ok", "missing", "unreadable"]
    assert list(df["stem"]) == ["face00", "face01", "face02"]
    assert df["message"][1] and df["message"][2] and not df["message"][0]
    ok = df[df["status"] == "ok"]
    for name in CODE_ORDER:
        assert len(ok[name].iloc[0]) == CODE_DIMS[name]
        assert df[name][1] is None
    assert len(ok["tform"].iloc[0]) == 9 and set(df["extractor"]) == {"deca"}
    assert meta["schema"] == 1 and meta["extractor"] == "deca" and meta["synthetic"] is True
    assert meta["image_size"] == IMAGE_SIZE
    assert "deca_model.tar" in meta["assets"] and all(len(h) == 64 for h in meta["assets"].values())
    assert not list(out.parent.glob(".*tmp*"))  # atomic write left nothing behind

    # the codes render into valid buffers and the tform is the crop of the aligned landmarks
    codes, tform = FlameCodes.from_frame(ok)
    lm = np.asarray(ALIGN.read(work / ALIGN_FILE)[0]["aligned_landmarks"][0]).reshape(1, 68, 2)
    torch.testing.assert_close(tform, crop_tforms(torch.from_numpy(lm)).float())
    buf = face_model.render(codes, tform, 64)
    assert torch.isfinite(buf.condition()).all() and buf.alpha.sum() > 0


def test_extract_emoca_sidecars_and_failures(synthetic_assets: Path, extractors: dict, album: Path, tmp_path: Path) -> None:
    """In-process runs (no interpreter start-up): EMOCA codes, sidecar landmarks, all-bad albums."""
    from dre import extract

    deca_out, emoca_out = tmp_path / "d.parquet", tmp_path / "e.parquet"
    extract.run(extract.Config(images=album, extractor="deca", assets=synthetic_assets, out=deca_out), extractors["deca"])
    extract.run(extract.Config(images=album, extractor="emoca", assets=synthetic_assets, out=emoca_out), extractors["emoca"])
    d, _ = _read(deca_out)
    e, emeta = _read(emoca_out)
    assert (e["status"] == "ok").all() and set(e["extractor"]) == {"emoca"}
    assert any(k.endswith("cfg.yaml") for k in emeta["assets"]) and any(k.endswith(".ckpt") for k in emeta["assets"])
    dexp, eexp = np.stack(d["exp"]), np.stack(e["exp"])
    assert np.abs(dexp - eexp).max() > 1e-3  # EMOCA's expression head replaces DECA's expression
    np.testing.assert_allclose(np.stack(d["tform"]), np.stack(e["tform"]))

    # no align.parquet: DECA-style <stem>.txt sidecars, and a clear status where one is missing
    side = tmp_path / "side"
    side.mkdir()
    report = ALIGN.read(album / ALIGN_FILE)[0]
    for i, name in enumerate(report["output"]):
        shutil.copy(album / name, side / name)
        if i < 2:
            np.savetxt(side / Path(name).with_suffix(".txt"), np.asarray(report["aligned_landmarks"][i]).reshape(68, 2))
    out = tmp_path / "s.parquet"
    rep = extract.run(extract.Config(images=side, extractor="deca", assets=synthetic_assets, out=out), extractors["deca"])
    s, _ = _read(out)
    assert list(s["status"]) == ["ok", "ok", "no_landmarks"] and rep.counts["ok"] == 2
    assert "dre align" in s["message"][2]
    np.testing.assert_allclose(np.stack(s["shape"][:2]), np.stack(d["shape"][:2]), atol=1e-4)

    # nothing usable: a user error naming each file, and no output written
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(album / "face00.png", bad / "x.png")
    np.savetxt(bad / "x.txt", np.full((68, 2), 5.0))
    with pytest.raises(DreError, match="x.png: bad_landmarks"):
        extract.run(extract.Config(images=bad, extractor="deca", assets=synthetic_assets, out=tmp_path / "b.parquet"),
                      extractors["deca"])
    assert not (tmp_path / "b.parquet").exists()


def test_extract_cli_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Flag mistakes are reported by the CLI entry point (in-process) as exit 2 with a message."""
    from dre.cli import main

    base = ["extract", "--extractor", "deca", "--out", str(tmp_path / "c.parquet")]
    assert main([*base, "--images", str(tmp_path / "none"), "--assets", str(tmp_path)]) == 2
    assert "--images" in capsys.readouterr().err
    assert main([*base, "--images", str(tmp_path), "--assets", str(tmp_path / "none")]) == 2
    assert "--assets" in capsys.readouterr().err
    assert main([*base, "--images", str(tmp_path), "--assets", str(tmp_path), "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err
    assert not (tmp_path / "c.parquet").exists()


def test_extract_reads_photos_upright_as_align_does(tmp_path: Path) -> None:
    """An already-aligned album is indexed by `dre align` on upright pixels (EXIF orientation applied), so
    extract must crop the same upright pixels; a square photo turned by its EXIF tag shows the difference."""
    from PIL import Image

    from dre.align.imageio import load_rgb
    from dre.extract.runner import Item, read_image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    path = tmp_path / "turned.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    got = read_image(Item(path, None))
    assert got is not None
    np.testing.assert_array_equal(got, load_rgb(path).array)
    with Image.open(path) as raw:
        assert not np.array_equal(got, np.asarray(raw.convert("RGB")))


def test_plain_folder_sidecars_are_read_as_align_reads_them(tmp_path: Path) -> None:
    """A plain folder of aligned images: `<stem>.txt` or `.npy` landmarks, through align's sidecar reader."""
    from dre.extract.runner import items_from_folder

    lm = np.random.default_rng(1).uniform(10, 50, (68, 2))
    for name in ("a", "b", "c", "d"):
        (tmp_path / f"{name}.png").write_bytes(b"")
    np.savetxt(tmp_path / "a.txt", lm)
    np.save(tmp_path / "b.npy", lm.astype(np.float32))
    (tmp_path / "c.txt").write_text("1 2\n3 four\n")
    items = {it.image.stem: it for it in items_from_folder(tmp_path)}
    np.testing.assert_allclose(items["a"].landmarks, lm, atol=1e-4)
    np.testing.assert_allclose(items["b"].landmarks, lm, atol=1e-4)
    assert items["c"].status == "bad_landmarks" and "c.txt cannot be read" in items["c"].message
    assert items["d"].status == "no_landmarks" and "d.txt" in items["d"].message
