"""dre LMDB schema: round trip of every field, fp16 bounds, map growth, atomic build, refusal of foreign stores."""

from __future__ import annotations

import pickle

import lmdb
import numpy as np
import pytest
import torch

from _data_helpers import face_like_cond, index_image, random_codes, write_store
from dre.data import LmdbAlbum, schema
from dre.data.store import build_lmdb
from dre.errors import DreError
from dre.face3d.codes import FlameCodes

SIZE = 48


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_round_trip_every_field(tmp_path):
    n = 4
    images = [index_image(i, SIZE) for i in range(n)]
    conds = [face_like_cond(SIZE, i) for i in range(n)]
    conds[3][:] = 0.0  # a sample with an empty render (face missed) must survive too
    flat, tform = random_codes(n, 1)
    mean = np.linspace(-1, 1, 100).astype(np.float32)
    meta = write_store(tmp_path / "a.lmdb", images, conds, codes=flat, tforms=tform, mean_shape=mean.tolist())

    album = LmdbAlbum(tmp_path / "a.lmdb")
    assert len(album) == n and album.image_size == SIZE
    assert album.meta == meta
    assert album.meta["schema_version"] == schema.SCHEMA_VERSION
    assert album.meta["buffers"]["channels"][:3] == ["rendered_r", "rendered_g", "rendered_b"]
    np.testing.assert_array_equal(album.mean_shape, mean)
    for i in range(n):
        np.testing.assert_array_equal(album.image(i), images[i])
        buf = album.buffers(i)
        assert buf.dtype == np.dtype("<f2") and buf.shape == (9, SIZE, SIZE)
        np.testing.assert_array_equal(buf, conds[i].astype(np.float16))  # fp16 rounding is the only change
        assert album.source(i) == f"img_{i:03d}.png"
        got_flat, got_tform = album.codes_array(i, as_rendered=False)
        np.testing.assert_array_equal(got_flat, flat[i])
        np.testing.assert_array_equal(got_tform, tform[i])
        codes, t = album.codes(i)  # as rendered: the album mean shape replaces the extracted one
        assert isinstance(codes, FlameCodes) and codes.batch_size == 1
        np.testing.assert_array_equal(codes.shape[0].numpy(), mean)
        np.testing.assert_array_equal(codes.exp[0].numpy(), flat[i, 150:200])
        np.testing.assert_array_equal(codes.light[0].numpy(), flat[i, 209:236].reshape(9, 3))
        np.testing.assert_array_equal(t[0].numpy(), tform[i])
    assert album.buffers_box(3)[0] == (0, 0, 0, 0)
    with pytest.raises(IndexError):
        album.image(n)


def test_buffers_are_zero_copy_views_of_the_map(tmp_path):
    cond = face_like_cond(SIZE, 3)
    write_store(tmp_path / "z.lmdb", [index_image(0, SIZE)], [cond])
    album = LmdbAlbum(tmp_path / "z.lmdb")
    (y0, y1, x0, x1), view = album.buffers_box(0)
    assert not view.flags.owndata and not view.flags.writeable  # a view of LMDB's read-only map
    assert isinstance(view.base, memoryview) or isinstance(getattr(view.base, "base", None), memoryview)
    mask = (cond != 0).any(0)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    assert (y0, y1, x0, x1) == (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
    # the stored record is the crop only: smaller than the full frame by the empty border
    raw_size = schema.BUFFER_HEADER_SIZE + 9 * (y1 - y0) * (x1 - x0) * 2
    del view
    album.close()  # py-lmdb allows one open environment per file and process
    with lmdb.open(str(tmp_path / "z.lmdb"), readonly=True, lock=False) as env, env.begin() as txn:
        assert len(txn.get(schema.sample_key(0, "buffers"))) == raw_size < 9 * SIZE * SIZE * 2


def test_fp16_error_bound_vs_fp32(tmp_path):
    """Stored buffers differ from the fp32 values by at most half an fp16 ulp (round to nearest)."""
    rng = np.random.default_rng(5)
    cond = face_like_cond(SIZE, 5)
    cond *= rng.uniform(0.5, 3.0, cond.shape).astype(np.float32)  # spread the magnitudes over several binades
    write_store(tmp_path / "f.lmdb", [index_image(0, SIZE)], [cond])
    got = LmdbAlbum(tmp_path / "f.lmdb").buffers(0).astype(np.float32)
    err = np.abs(got - cond)
    # half an ulp of fp16: 2^-11 relative for normals, 2^-25 absolute in the subnormal range
    bound = np.maximum(np.abs(cond) * 2.0**-11, 2.0**-25)
    assert (err <= bound).all(), float((err / bound).max())
    assert err.max() <= 3 * 2.0**-11  # |v| < 3 here
    assert (got[cond == 0] == 0).all()


def test_out_of_range_buffers_are_refused():
    cond = face_like_cond(SIZE, 0)
    cond[0, SIZE // 2, SIZE // 2] = 1e5
    with pytest.raises(DreError, match="float16 range"):
        schema.encode_buffers(cond, "sample 9")
    cond[0, SIZE // 2, SIZE // 2] = np.nan
    with pytest.raises(DreError, match="sample 9"):
        schema.encode_buffers(cond, "sample 9")


def test_map_size_grows_instead_of_reserving(tmp_path):
    dest = tmp_path / "g.lmdb"
    payload = np.random.default_rng(0).bytes(300_000)
    with build_lmdb(dest, initial_map_size=64 << 10) as b:
        for i in range(8):
            b.put([(f"{i:07d}/blob".encode(), payload)])
        grows = b.grow_count
        b.write_meta(schema.make_meta(count=0, image_size=1, extractor="deca", assets={}, synthetic=False,
                                      source_hash=None, mean_shape=None, has_codes=False))  # fmt: skip
    assert grows >= 3
    with lmdb.open(str(dest), readonly=True, lock=False) as env, env.begin() as txn:
        assert all(txn.get(f"{i:07d}/blob".encode()) == payload for i in range(8))
    assert not (dest / "lock.mdb").exists()


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_build_leaves_nothing(tmp_path, exc):
    dest = tmp_path / "x.lmdb"
    with pytest.raises(exc):
        with build_lmdb(dest) as b:
            b.put([(b"0000000/image", b"abc")])
            raise exc()
    assert _siblings(dest) == []


def test_failed_rebuild_keeps_previous_store(tmp_path):
    dest = tmp_path / "p.lmdb"
    write_store(dest, [index_image(0, SIZE)], [face_like_cond(SIZE, 0)])
    with pytest.raises(RuntimeError, match="without metadata"):
        with build_lmdb(dest) as b:
            b.put([(b"0000000/image", b"abc")])
    assert _siblings(dest) == ["p.lmdb"]
    np.testing.assert_array_equal(LmdbAlbum(dest).image(0), index_image(0, SIZE))


def test_foreign_or_newer_stores_are_refused(tmp_path):
    legacy = tmp_path / "old.lmdb"
    with lmdb.open(str(legacy), map_size=1 << 20) as env, env.begin(write=True) as txn:
        txn.put(b"length", b"0")
    with pytest.raises(DreError, match="--import-legacy"):
        LmdbAlbum(legacy)
    with pytest.raises(DreError, match="no data.mdb"):
        LmdbAlbum(tmp_path / "missing.lmdb")
    newer = tmp_path / "new.lmdb"
    meta = schema.make_meta(count=0, image_size=8, extractor="deca", assets={}, synthetic=False, source_hash=None,
                            mean_shape=None, has_codes=False)  # fmt: skip
    meta["schema_version"] = schema.SCHEMA_VERSION + 1
    with build_lmdb(newer) as b:
        b.write_meta(meta)
    with pytest.raises(DreError, match="schema version"):
        LmdbAlbum(newer)


def test_album_pickles_without_its_environment(tmp_path):
    write_store(tmp_path / "k.lmdb", [index_image(0, SIZE)], [face_like_cond(SIZE, 0)])
    album = LmdbAlbum(tmp_path / "k.lmdb")
    album.image(0)
    clone = pickle.loads(pickle.dumps(album))
    np.testing.assert_array_equal(clone.buffers(0), album.buffers(0))
    # a second album on the same file in one process shares the environment (LMDB forbids two opens)
    other = LmdbAlbum(tmp_path / "k.lmdb")
    np.testing.assert_array_equal(other.image(0), album.image(0))
    other.close()
    np.testing.assert_array_equal(album.image(0), index_image(0, SIZE))
    album.close()
    clone.close()
    assert torch.equal(torch.from_numpy(LmdbAlbum(tmp_path / "k.lmdb").buffers(0).astype(np.float32)),
                       torch.from_numpy(face_like_cond(SIZE, 0).astype(np.float16).astype(np.float32)))  # fmt: skip


def test_corrupt_records_are_errors_naming_the_sample(tmp_path):
    """A damaged store (a buffer box outside the image, a cut-off buffer record, image bytes that are no PNG) is a
    DreError naming the LMDB and the sample, not a numpy/torch/PIL error from deep inside a loader worker."""
    import struct

    path = tmp_path / "bad.lmdb"
    write_store(path, [index_image(i, SIZE) for i in range(3)], [face_like_cond(SIZE, i) for i in range(3)])
    outside = schema.BUFFER_MAGIC + struct.pack("<4H", SIZE - 2, SIZE + 2, 0, 2) + np.zeros((9, 4, 2), "<f2").tobytes()
    cut = schema.encode_buffers(face_like_cond(SIZE, 1), "sample 1")[:-1]
    with lmdb.open(str(path), map_size=64 << 20) as env, env.begin(write=True) as txn:
        txn.put(schema.sample_key(0, "buffers"), outside)
        txn.put(schema.sample_key(1, "buffers"), cut)
        txn.put(schema.sample_key(2, "image"), b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    album = LmdbAlbum(path)
    for call in (album.cond, album.buffers):
        with pytest.raises(DreError, match=rf"{path} sample 0: .*outside the {SIZE}x{SIZE} image"):
            call(0)
        with pytest.raises(DreError, match=rf"{path} sample 1: buffer record size"):
            call(1)
    with pytest.raises(DreError, match=rf"{path}: image 2 is not a readable PNG"):
        album.image(2)
    album.close()
