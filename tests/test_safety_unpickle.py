"""The restricted unpickler returns exactly what our own writers pickled, and names what it refuses."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dre.errors import DreError
from dre.safety.unpickle import (FAMILIES_FLAME, UnsafePickleError, load_flame_pickle, load_npy, load_npy_bytes,
                                 load_tensor_pickle, loads)  # fmt: skip
from tests._pickle_cases import Asm


def _flame_like(Ch: type) -> tuple[dict, dict]:
    from scipy.sparse import csc_matrix, csr_matrix

    rng = np.random.default_rng(1)
    jr = np.where(rng.random((5, 9)) < 0.3, rng.random((5, 9)), 0.0)
    plain = {
        "v_template": np.asfortranarray(rng.standard_normal((9, 3))),
        "shapedirs": rng.standard_normal((9, 3, 4)).astype(np.float32),
        "f": rng.integers(0, 9, (7, 3)).astype(np.uint32),
        "kintree_table": np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
        "mask": rng.random(9) < 0.5,
        "big_endian": np.arange(4, dtype=">i4"),
        "complex": np.array([1 + 2j], dtype=np.complex64),
        "scalar": np.float64(2.5),
        "empty": np.zeros((0, 3)),
        "bs_style": "lbs",
        "misc": [1, 2.5, None, True, b"raw", ("t", 1)],
    }
    pickled = dict(plain, v_template=Ch(plain["v_template"]), shapedirs=Ch(plain["shapedirs"]),
                   J_regressor=csc_matrix(jr), J_csr=csr_matrix(jr))  # fmt: skip
    return pickled, dict(plain, J_regressor=jr, J_csr=jr)


def _assert_same(got: object, want: object) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want)
        for k in want:
            _assert_same(got[k], want[k])
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w)
    elif isinstance(want, torch.Tensor):
        assert type(got) is torch.Tensor and got.dtype == want.dtype and torch.equal(got, want)
    elif isinstance(want, (np.ndarray, np.generic)):
        assert got.dtype == want.dtype and np.shape(got) == np.shape(want) and np.array_equal(got, want)
        if isinstance(want, np.ndarray):
            assert isinstance(got, np.ndarray) and got.flags.writeable and got.flags.owndata
    else:
        assert type(got) is type(want) and got == want


@pytest.mark.parametrize("protocol", [0, 1, 2, 4])
def test_flame_format_round_trip(tmp_path: Path, protocol: int) -> None:
    """chumpy arrays (through the synthetic writer's stand-in) and scipy matrices come back as numpy arrays,
    whatever protocol wrote them (FLAME 2020 is a Python 2, protocol-2 pickle)."""
    from dre.face3d.synth_head import chumpy_standin

    with chumpy_standin() as Ch:
        pickled, want = _flame_like(Ch)
        (tmp_path / "m.pkl").write_bytes(pickle.dumps(pickled, protocol=protocol))
    _assert_same(load_flame_pickle(tmp_path / "m.pkl"), want)


def test_python2_strings_and_reconstructor() -> None:
    """A Python 2 pickle: array data and the _reconstruct typecode as str (BINSTRING, latin-1), and a chumpy
    object made by copy_reg._reconstructor(Ch, object, None)."""
    A = Asm
    data = np.arange(3, dtype="<f8").tobytes()

    def binstring(raw: bytes) -> bytes:
        return b"T" + struct.pack("<i", len(raw)) + raw

    arr = A.call(A.glob("numpy.core.multiarray", "_reconstruct"), A.glob("numpy", "ndarray"), A.tup(A.i(0)),
                 binstring(b"b")) + A.tup(A.i(1), A.tup(A.i(3)), A.dtype("f8"), A.FALSE, binstring(data)) + A.BUILD
    ch = A.call(A.glob("copy_reg", "_reconstructor"), A.glob("chumpy.ch", "Ch"), A.glob("__builtin__", "object"), A.NONE)
    ch += A.EMPTY_DICT + A.u("x") + arr + A.SETITEM + A.BUILD
    got = loads(A.flame(ch), "py2.pkl", FAMILIES_FLAME)
    assert np.array_equal(got["v_template"], np.arange(3.0))


def test_bool_bytes_are_normalised() -> None:
    A = Asm
    got = loads(A.flame(A.array(A.dtype("b1", endian="|"), (3,), b"\x00\x02\xff")), "b.pkl", FAMILIES_FLAME)
    assert got["v_template"].tolist() == [False, True, True] and got["v_template"].view(np.uint8).max() == 1


def test_landmark_npy_round_trip(tmp_path: Path) -> None:
    emb = {
        "static_lmk_faces_idx": np.arange(51, dtype=np.int64),
        "static_lmk_bary_coords": np.full((51, 3), 1 / 3, dtype=np.float32),
        "dynamic_lmk_faces_idx": torch.arange(79 * 17).reshape(79, 17),
        "dynamic_lmk_bary_coords": torch.rand(79, 17, 3),
        "view": torch.arange(20.0).reshape(4, 5)[:, 1:3],
    }
    p = tmp_path / "landmark_embedding.npy"
    np.save(p, np.array(emb, dtype=object), allow_pickle=True)
    _assert_same(load_npy(p), {**emb, "view": emb["view"].contiguous()})


@pytest.mark.parametrize("arr", [np.arange(6, dtype=">f4").reshape(2, 3), np.asfortranarray(np.eye(3)),
                                 np.array([True, False]), np.zeros((0, 2), np.int16), np.float32(1.5)])  # fmt: skip
def test_numeric_npy_from_bytes(arr: np.ndarray) -> None:
    fh = io.BytesIO()
    np.save(fh, arr)
    _assert_same(load_npy_bytes(fh.getvalue(), "a.npy"), np.asarray(arr))


def test_structured_npy_refused() -> None:
    fh = io.BytesIO()
    np.save(fh, np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))
    with pytest.raises(UnsafePickleError, match=r"a\.npy.*dtype"):
        load_npy_bytes(fh.getvalue(), "a.npy")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("make", [
    lambda: torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)[1],
    lambda: torch.arange(24.0).reshape(4, 6).t(),
    lambda: torch.randn(3, 2).bfloat16(), lambda: torch.tensor([True, False]), lambda: torch.tensor(7),
    lambda: torch.zeros(0, 4, dtype=torch.float16), lambda: torch.arange(5, dtype=torch.uint8).expand(3, 5),
])  # fmt: skip
def test_tensor_values(make, protocol: int) -> None:
    t = make()
    _assert_same(load_tensor_pickle(pickle.dumps(t, protocol=protocol), "x.lmdb key 'k'"), t.contiguous())


def test_errors_name_file_key_and_global(tmp_path: Path) -> None:
    A = Asm
    with pytest.raises(UnsafePickleError, match=r"x\.lmdb key 'albedo_000003'.*posix\.system|os\.system"):
        load_tensor_pickle(A.proto(2) + A.call(A.glob("os", "system"), A.u("true")) + A.STOP, "x.lmdb key 'albedo_000003'")
    p = tmp_path / "generic_model.pkl"
    p.write_bytes(A.flame(A.array(A.dtype("O8", endian="|"), (1,), b"\0" * 8), key="shapedirs"))
    with pytest.raises(DreError, match=r"generic_model\.pkl at \['shapedirs'\].*'O8'"):
        load_flame_pickle(p)
    p.write_bytes(A.proto(2) + A.EMPTY_LIST + A.EMPTY_DICT + A.BUILD + A.STOP)
    with pytest.raises(DreError, match=r"generic_model\.pkl.*opcode BUILD on a list"):
        load_flame_pickle(p)
    p.write_bytes(b"\x80\x02}q\x00")  # truncated
    with pytest.raises(DreError, match=r"generic_model\.pkl: not a readable pickle"):
        load_flame_pickle(p)
