"""`dre pack` from codes + images: stored fields, mean-shape albums, resizing, failures, real renders."""

from __future__ import annotations

import hashlib
import subprocess

import numpy as np
import pytest
import torch

from _data_helpers import face_like_cond, image_index, index_image, renderable_codes, write_codes_table
from dre.data import FaceDataset, LmdbAlbum
from dre import pack
from dre.pack.runner import MEAN_SHAPE_FILE
from dre.errors import DreError
from dre.face3d.codes import Buffers
from dre.face3d.face_model import FaceModel
from dre.tables import MANIFEST

SIZE = 32


class RecordingRenderer:
    """Engine-level test double of FaceModel.render: records its inputs, returns input-dependent buffers.

    The buffers are a function of the codes and tform it receives (so a wrong batch, order or mean-shape
    substitution shows up in the stored values), not a face render; real renders are tested below with
    FaceModel.
    """

    synthetic = True
    checksums = {"generic_model.pkl": "11", "FLAME_texture.npz": "22"}

    def __init__(self, fail_on_call: int | None = None):
        self.calls: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        self.fail_on_call = fail_on_call

    def render(self, codes, tform, image_size=256, center=None):
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt  # what SIGTERM becomes in `dre pack`
        self.calls.append((codes.shape.clone(), tform.clone(), image_size))
        cond = torch.stack([self.expected(codes.flat()[b], tform[b], image_size) for b in range(codes.batch_size)])
        alpha = (cond.abs().sum(dim=1, keepdim=True) > 0).to(cond.dtype)  # coverage: any buffer channel non-zero
        return Buffers(rendered=cond[:, 0:3], normal=cond[:, 3:6], albedo=cond[:, 6:9], alpha=alpha)

    @staticmethod
    def expected(flat: torch.Tensor, tform: torch.Tensor, size: int) -> torch.Tensor:
        seed = int(abs(float(flat[:3].sum())) * 1000) % 10_000
        cond = torch.from_numpy(face_like_cond(size, seed))
        return cond * (1 + 0.1 * torch.tanh(flat[0])) + 0.01 * tform[0, 2] * (cond != 0)


def _pack(tmp_path, n=7, batch=3, renderer=None, **kw):
    flat, tform, paths = write_codes_table(tmp_path / "codes.parquet", tmp_path / "aligned", n, SIZE,
                                           bad_rows=kw.pop("bad_rows", ()))  # fmt: skip
    cfg = pack.Config(out=tmp_path / "album.emoca.lmdb", images=tmp_path / "aligned", codes=tmp_path / "codes.parquet",
                     size=SIZE, batch_size=batch, device="cpu", **kw)  # fmt: skip
    renderer = renderer or RecordingRenderer()
    return pack.run(cfg, face_model=renderer), renderer, flat, tform, paths


def test_pack_stores_every_field(tmp_path):
    result, renderer, flat, tform, paths = _pack(tmp_path, bad_rows=(2,))
    ok = [i for i in range(7) if i != 2]
    assert result.count == 6 and result.skipped == 1 and result.synthetic
    assert [c[0].shape[0] for c in renderer.calls] == [3, 3]  # batched
    album = LmdbAlbum(result.out)
    meta = album.meta
    assert meta["count"] == 6 and meta["image_size"] == SIZE and meta["extractor"] == "emoca"
    assert meta["assets"] == RecordingRenderer.checksums and meta["synthetic"] is True
    assert meta["source_hash"] == hashlib.sha256((tmp_path / "codes.parquet").read_bytes()).hexdigest()
    assert meta["mean_shape"] is None and not (result.out / MEAN_SHAPE_FILE).exists()
    for k, i in enumerate(ok):
        assert album.image_png(k) == paths[i].read_bytes()  # an RGB PNG of the right size is stored as is
        np.testing.assert_array_equal(album.image(k), index_image(i, SIZE))
        got_flat, got_tform = album.codes_array(k)
        np.testing.assert_array_equal(got_flat, flat[i])
        np.testing.assert_array_equal(got_tform, tform[i])
        assert album.source(k) == paths[i].name
        want = RecordingRenderer.expected(torch.from_numpy(flat[i]), torch.from_numpy(tform[i]), SIZE)
        np.testing.assert_array_equal(album.buffers(k), want.numpy().astype(np.float16))
    man = MANIFEST.read(result.manifest)[0]
    assert result.manifest == tmp_path / "album.emoca.parquet"
    assert man["index"].tolist() == list(range(6)) and man["stem"].tolist() == [paths[i].stem for i in ok]
    np.testing.assert_array_equal(np.stack(man["exp"].to_numpy())[1], flat[ok[1], 150:200])
    assert MANIFEST.read_meta(result.manifest) == meta
    ds = FaceDataset(result.out)
    assert [image_index(ds[k]["image"]) for k in range(6)] == ok


def test_mean_shape_album(tmp_path):
    result, renderer, flat, tform, _ = _pack(tmp_path, n=5, batch=2, mean_shape=True)
    mean = flat[:, :100].astype(np.float64).mean(0).astype(np.float32)
    for shapes, _, _ in renderer.calls:  # every sample rendered with the album mean
        np.testing.assert_allclose(shapes.numpy(), np.broadcast_to(mean, shapes.shape), rtol=0, atol=1e-7)
    album = LmdbAlbum(result.out)
    np.testing.assert_allclose(album.meta["mean_shape"], mean, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(np.load(result.out / MEAN_SHAPE_FILE), album.mean_shape)
    for i in range(5):
        rendered_codes, _ = album.codes(i)
        np.testing.assert_array_equal(rendered_codes.shape[0].numpy(), album.mean_shape)
        extracted, _ = album.codes(i, as_rendered=False)
        np.testing.assert_array_equal(extracted.shape[0].numpy(), flat[i, :100])
        np.testing.assert_array_equal(extracted.tex[0].numpy(), flat[i, 100:150])


def test_images_of_another_size_are_resized_and_tform_follows(tmp_path):
    write_codes_table(tmp_path / "codes.parquet", tmp_path / "aligned", 2, 2 * SIZE)
    renderer = RecordingRenderer()
    cfg = pack.Config(out=tmp_path / "r.lmdb", images=tmp_path / "aligned", codes=tmp_path / "codes.parquet",
                     size=SIZE, batch_size=4, device="cpu")  # fmt: skip
    _, tform, _ = write_codes_table(tmp_path / "codes.parquet", tmp_path / "aligned", 2, 2 * SIZE)
    pack.run(cfg, face_model=renderer)
    album = LmdbAlbum(tmp_path / "r.lmdb")
    assert album.image(0).shape == (SIZE, SIZE, 3)
    # aligned px x' = x/2, so crop = T·diag(2,2,1)·x'
    expect = tform[0] @ np.diag([2.0, 2.0, 1.0]).astype(np.float32)
    np.testing.assert_allclose(renderer.calls[0][1][0].numpy(), expect, rtol=1e-6)
    np.testing.assert_allclose(album.codes_array(0)[1], expect, rtol=1e-6)


def test_interrupted_pack_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _pack(tmp_path, n=9, batch=2, renderer=RecordingRenderer(fail_on_call=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aligned", "codes.parquet"]


def test_user_errors_name_the_row_or_flag(tmp_path):
    write_codes_table(tmp_path / "codes.parquet", tmp_path / "aligned", 3, SIZE)
    (tmp_path / "aligned" / "face_001.png").unlink()
    cfg = pack.Config(out=tmp_path / "e.lmdb", images=tmp_path / "aligned", codes=tmp_path / "codes.parquet",
                     size=SIZE, device="cpu")  # fmt: skip
    with pytest.raises(DreError, match=r"row 1 \(0-based\): image .*face_001.png"):
        pack.run(cfg, face_model=RecordingRenderer())
    write_codes_table(tmp_path / "codes.parquet", tmp_path / "aligned", 2, SIZE, bad_rows=(0, 1))
    with pytest.raises(DreError, match="no row has status 'ok'"):
        pack.run(cfg, face_model=RecordingRenderer())
    with pytest.raises(DreError, match="--codes"):
        pack.run(pack.Config(out=tmp_path / "e.lmdb", codes=tmp_path / "nope.parquet"), face_model=RecordingRenderer())
    assert not (tmp_path / "e.lmdb").exists()


# ---------------------------------------------------------------- with the real renderer

def _fp16_close(stored: np.ndarray, ref: np.ndarray) -> None:
    """Stored fp16 within half an fp16 ulp of a fresh fp32 render, plus the fp32 render's own run-to-run
    wobble (a different batch composition or thread count changes the last fp32 bits)."""
    err = np.abs(stored.astype(np.float32) - ref)
    bound = np.maximum(np.abs(ref) * 2.0**-11, 2.0**-25) + 1e-5 * np.abs(ref) + 1e-6
    assert (err <= bound).all(), f"max error/bound {float((err / bound).max()):.3f}"
    assert err.max() <= 2.0**-11 * max(1.0, float(np.abs(ref).max())) + 1e-5


def test_pack_cli_renders_with_face_model(tmp_path, synthetic_assets, dre_cmd, cli_env):
    n = 3
    flat, tform = renderable_codes(n, SIZE)
    write_codes_table(tmp_path / "codes.parquet", tmp_path / "aligned", n, SIZE, flat=flat, tform=tform)
    out = tmp_path / "album.deca.lmdb"
    r = subprocess.run([*dre_cmd, "pack", "--images", str(tmp_path / "aligned"), "--codes", str(tmp_path / "codes.parquet"),
                        "--assets", str(synthetic_assets), "--out", str(out), "--size", str(SIZE), "--batch-size", "2",
                        "--device", "cpu"], env=cli_env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC" in r.stderr
    album = LmdbAlbum(out)
    model = FaceModel.from_assets(synthetic_assets, torch.device("cpu"))
    assert album.meta["assets"] == model.checksums and album.meta["synthetic"] is True
    codes, t = album.codes(0)
    for i in range(n):
        codes, t = album.codes(i)
        with torch.no_grad():
            ref = model.render(codes, t, image_size=SIZE).condition()[0].float().numpy()
        assert (ref != 0).any(axis=0).mean() > 0.05, "the test codes should put the head in frame"
        _fp16_close(album.buffers(i), ref)  # fp16 storage error vs the fp32 render, per element


def test_mean_shape_album_renders_with_the_mean(tmp_path, synthetic_assets):
    n = 3
    flat, tform = renderable_codes(n, SIZE, seed=1)
    write_codes_table(tmp_path / "codes.parquet", tmp_path / "aligned", n, SIZE, flat=flat, tform=tform)
    model = FaceModel.from_assets(synthetic_assets, torch.device("cpu"))
    cfg = pack.Config(out=tmp_path / "m.lmdb", images=tmp_path / "aligned", codes=tmp_path / "codes.parquet",
                     size=SIZE, batch_size=2, device="cpu", mean_shape=True)  # fmt: skip
    pack.run(cfg, face_model=model)
    album = LmdbAlbum(cfg.out)
    mean = flat[:, :100].mean(0)
    np.testing.assert_allclose(album.mean_shape, mean, atol=1e-6)
    for i in range(n):
        own, t = album.codes(i, as_rendered=False)
        with_mean = own.clone()
        with_mean.shape = torch.from_numpy(album.mean_shape)[None]
        with torch.no_grad():
            ref = model.render(with_mean, t, image_size=SIZE).condition()[0].numpy()
            ref_own = model.render(own, t, image_size=SIZE).condition()[0].numpy()
        _fp16_close(album.buffers(i), ref)
        assert np.abs(ref_own - ref).max() > 1e-2  # the swap matters: own shapes render differently


def test_exif_rotated_images_are_stored_upright(tmp_path):
    """`dre extract` (and `dre edit`) read a photo upright (EXIF orientation applied) and its landmarks, codes
    and buffers describe that upright face, so the image stored beside the buffers must be upright too."""
    from PIL import Image

    _, _, paths = write_codes_table(tmp_path / "codes.parquet", tmp_path / "aligned", 3, SIZE)
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: the stored pixels are upside down; viewers and extract turn them by 180°
    upright = index_image(1, SIZE)
    Image.fromarray(np.ascontiguousarray(upright[::-1, ::-1])).save(paths[1], exif=exif.tobytes())
    cfg = pack.Config(out=tmp_path / "x.lmdb", images=tmp_path / "aligned", codes=tmp_path / "codes.parquet",
                      size=SIZE, batch_size=4, device="cpu")
    pack.run(cfg, face_model=RecordingRenderer())
    album = LmdbAlbum(tmp_path / "x.lmdb")
    np.testing.assert_array_equal(album.image(1), upright)
    np.testing.assert_array_equal(album.image(0), index_image(0, SIZE))  # plain PNGs are still stored as they are
    assert album.image_png(0) == paths[0].read_bytes()
