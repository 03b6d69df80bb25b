"""Legacy import: original DiffusionRig LMDBs convert faithfully, and malicious pickles are refused."""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import time

import lmdb
import numpy as np
import pytest
import torch

from _data_helpers import face_like_cond, index_image, png_bytes, write_legacy_lmdb
from dre.data import LmdbAlbum
from dre.data.legacy import LegacyLmdb
from dre.safety.unpickle import UnsafePickleError, load_tensor_pickle
from dre.cli import main as cli_main
from dre.errors import DreError
from dre.tables import MANIFEST

SIZE = 40


def _legacy(path, n, size=SIZE, mean_shape=None):
    images = [index_image(i, size) for i in range(n)]
    conds = [face_like_cond(size, i) for i in range(n)]
    write_legacy_lmdb(path, [png_bytes(im) for im in images], conds, mean_shape=mean_shape)
    return images, conds


def _replace_value(path, key: bytes, value: bytes) -> None:
    with lmdb.open(str(path), map_size=64 << 20) as env, env.begin(write=True) as txn:
        assert txn.get(key) is not None
        txn.put(key, value)


class _RunsCode:
    """Unpickling this runs a shell command (what an attacker would put in a shared LMDB)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_written_layout_is_the_original_one(tmp_path):
    _legacy(tmp_path / "old.lmdb", 2)
    with lmdb.open(str(tmp_path / "old.lmdb"), readonly=True, lock=False) as env, env.begin() as txn:
        keys = sorted(k.decode() for k, _ in txn.cursor())
        assert keys == ["albedo_000000", "albedo_000001", "image_000000", "image_000001", "length",
                        "normal_000000", "normal_000001", "rendered_000000", "rendered_000001"]  # fmt: skip
        assert txn.get(b"length") == b"2"
        t = pickle.loads(txn.get(b"normal_000001"))  # our own trusted test data: plain pickle is fine here
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (3, SIZE, SIZE)


def test_import_legacy_cli_round_trip(tmp_path, capsys):
    # in-process CLI: a subprocess would spend ~20 s importing torch on the shared test machine
    mean = np.linspace(-0.5, 0.5, 100).astype(np.float32)
    images, conds = _legacy(tmp_path / "old.lmdb", 5, mean_shape=mean)
    out = tmp_path / "new.lmdb"
    assert cli_main(["pack", "--import-legacy", str(tmp_path / "old.lmdb"), "--out", str(out)]) == 0, capsys.readouterr().err
    album = LmdbAlbum(out)
    assert len(album) == 5 and album.image_size == SIZE
    assert album.meta["codes"] is None and album.meta["legacy"]["length"] == 5
    np.testing.assert_array_equal(album.mean_shape, mean)
    np.testing.assert_array_equal(np.load(out / "mean_shape.npy"), mean)
    for i in range(5):
        np.testing.assert_array_equal(album.image(i), images[i])
        np.testing.assert_array_equal(album.buffers(i), conds[i].astype(np.float16))
        assert album.source(i) == f"image_{i:06d}"
    with pytest.raises(DreError, match="no FLAME codes"):
        album.codes(0)
    man = MANIFEST.read(tmp_path / "new.parquet")[0]
    assert man["index"].tolist() == list(range(5))
    assert man["source"].iloc[2].endswith("#image_000002") and man["shape"].isna().all()


def test_malicious_pickle_is_refused(tmp_path, capsys):
    # in-process CLI (importing torch in a subprocess costs ~20 s on the shared test machine)
    old = tmp_path / "old.lmdb"
    _legacy(old, 3)
    marker = tmp_path / "PWNED"
    _replace_value(old, b"normal_000001", pickle.dumps(_RunsCode(marker)))
    out = tmp_path / "new.lmdb"
    rc = cli_main(["pack", "--import-legacy", str(old), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "normal_000001" in err and "refused" in err and "system" in err
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.lmdb"]  # no LMDB, no manifest, no temp folder


def test_malicious_storage_payload_is_refused(tmp_path):
    """The embedded torch.save bytes of a tensor pickle go through the same restricted unpickler."""
    import torch.storage

    marker = tmp_path / "PWNED"
    inner = io.BytesIO()
    torch.save(_RunsCode(marker), inner, _use_new_zipfile_serialization=False)

    class _EvilStorage:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (inner.getvalue(),))

    with pytest.raises(UnsafePickleError, match="albedo_000000.*refused"):
        load_tensor_pickle(pickle.dumps(_EvilStorage()), "key 'albedo_000000'")
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps({"a": 1}),  # plain containers are not tensors
        pickle.dumps(np.zeros(3)),  # numpy reconstructors are not allowed
        b"cbuiltins\neval\n(S'1+1'\ntR.",  # protocol-0 eval
    ],
)
def test_anything_but_a_tensor_is_refused(payload):
    with pytest.raises(DreError):
        load_tensor_pickle(payload, "key 'x'")


def test_safe_loader_reads_tensors_and_views():
    base = torch.arange(60, dtype=torch.float32).reshape(4, 3, 5)
    view = base[1]  # pickling a view stores the whole storage plus an offset
    got = load_tensor_pickle(pickle.dumps(view), "k")
    assert torch.equal(got, view)
    assert torch.equal(load_tensor_pickle(pickle.dumps(base.half()), "k"), base.half())


def test_broken_legacy_lmdbs_fail_clearly(tmp_path):
    old = tmp_path / "old.lmdb"
    _legacy(old, 2)
    with lmdb.open(str(old), map_size=64 << 20) as env, env.begin(write=True) as txn:
        txn.delete(b"albedo_000001")
    reader = LegacyLmdb(old)
    reader.sample(0)
    with pytest.raises(DreError, match="albedo_000001"):
        reader.sample(1)
    reader.close()
    _replace_value(old, b"length", b"two")
    with pytest.raises(DreError, match="decimal"):
        LegacyLmdb(old)
    _replace_value(old, b"rendered_000000", pickle.dumps(torch.zeros(3, SIZE + 1, SIZE)))
    _replace_value(old, b"length", b"1")
    with pytest.raises(DreError, match="different shapes"):
        LegacyLmdb(old).sample(0)


def test_interrupt_during_import_leaves_nothing(tmp_path, monkeypatch, capsys):
    old = tmp_path / "old.lmdb"
    _legacy(old, 6)
    real = LegacyLmdb.sample

    def interrupted(self, i):
        if i == 4:
            raise KeyboardInterrupt
        return real(self, i)

    monkeypatch.setattr(LegacyLmdb, "sample", interrupted)
    assert cli_main(["pack", "--import-legacy", str(old), "--out", str(tmp_path / "new.lmdb")]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.lmdb"]


@pytest.mark.slow
def test_sigterm_during_import_leaves_nothing(tmp_path, dre_cmd, cli_env):
    old = tmp_path / "old.lmdb"
    _legacy(old, 600, size=64)
    out = tmp_path / "new.lmdb"
    proc = subprocess.Popen([*dre_cmd, "pack", "--import-legacy", str(old), "--out", str(out)],
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.startswith(".new.lmdb.") for p in tmp_path.iterdir()):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the import finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.lmdb"]
