"""dre.tables: every inter-stage table round-trips, and stale or foreign files fail with the file's name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dre import tables
from dre.errors import DreError
from dre.face3d.codes import CODE_DIMS, CODE_ORDER
from dre.report import status_counts
from dre.tables import (
    ALIGN,
    CODES,
    DRAW_COLUMNS,
    EDIT,
    EDIT_V1,
    EDIT_V2,
    MANIFEST,
    RIG_COLUMNS,
    SCORE_COLUMNS,
    read_edit_rows,
)

DIMS = {**CODE_DIMS, "tform": 9}


def _codes(k: int) -> dict[str, list[float]]:
    return {name: [float(k) + 0.5 * j for j in range(DIMS[name])] for name in (*CODE_ORDER, "tform")}


def align_sample() -> tuple[list[dict], dict]:
    lm = [float(v) for v in np.linspace(0, 63, 136, dtype=np.float32)]
    rows = [
        {"source": "/raw/a.jpg", "face_index": 0, "status": "ok", "message": "", "landmarks": lm,
         "aligned_landmarks": lm, "quad": [1.0] * 8, "confidence": 0.9, "backend": "fan", "output": "a.png"},
        {"source": "/raw/b.txt", "face_index": -1, "status": "not_image", "message": "b.txt: not an image suffix",
         "landmarks": None, "aligned_landmarks": None, "quad": None, "confidence": 0.0, "backend": "fan",
         "output": None},
    ]  # fmt: skip
    meta = {"backend": "fan", "size": 64, "already_aligned": False, "multi_face": "largest", "min_face": 64.0,
            "transform_size": 256}  # fmt: skip
    return rows, meta


def codes_sample() -> tuple[list[dict], dict]:
    rows = [
        {"image": "/al/a.png", "stem": "a", "status": "ok", "message": "", **_codes(1), "extractor": "deca"},
        {"image": "/al/b.png", "stem": "b", "status": "unreadable", "message": "b.png: truncated",
         **{name: None for name in (*CODE_ORDER, "tform")}, "extractor": "deca"},
    ]  # fmt: skip
    meta = {"extractor": "deca", "emoca_model": None, "assets": {"generic_model.pkl": "ab"}, "synthetic": True,
            "image_size": 64, "counts": {"ok": 1, "unreadable": 1}}  # fmt: skip
    return rows, meta


def manifest_sample() -> tuple[list[dict], dict]:
    from dre.data import schema

    rows = [{"index": i, "source": f"/al/{s}.png", "stem": s, "box": [0, 64, 3, 60], **_codes(i)}
            for i, s in enumerate(["a", "b"])]  # fmt: skip
    meta = schema.make_meta(count=2, image_size=64, extractor="deca", assets={}, synthetic=True, source_hash="00",
                            mean_shape=None, has_codes=True, extra={"skipped": 0, "source": "codes.parquet"})
    return rows, meta


def edit_sample(noise_seed: int | None = 11) -> tuple[list[dict], dict]:
    row = {"source": "/al/a.png", "source_stem": "a", "target": "/t/t.png", "mode": "exp", "seed": 3,
           "noise_seed": noise_seed, "init": "noise" if noise_seed is not None else "inversion", "steps": 20,
           "eta": 0.0, "model": "m.pt", "source_extractor": "deca", "target_extractor": "emoca",
           "mean_shape": False, "file": "a_exp.png", "buffers": "buffers/a_exp.npz", "synthetic": True,
           **{name: [0.5] * CODE_DIMS[name] for name in CODE_ORDER},
           **{name: None for name, _ in (*RIG_COLUMNS, *DRAW_COLUMNS, *SCORE_COLUMNS)}}  # fmt: skip
    meta = {"modes": ["exp"], "sources": ["/al/a.png"], "target": "/t/t.png", "seed": 3, "init": row["init"],
            "steps": 20, "eta": 0.0, "model": "m.pt", "source_extractor": "deca", "target_extractor": "emoca",
            "synthetic": True, "sequences": []}  # fmt: skip
    return [row], meta


SAMPLES = {"align": (ALIGN, align_sample), "codes": (CODES, codes_sample), "manifest": (MANIFEST, manifest_sample),
           "edit": (EDIT, edit_sample)}  # fmt: skip


def _raw_meta(path: Path) -> str:
    return pq.read_schema(path).metadata[b"dre"].decode()


def _rewrite(path: Path, out: Path, *, meta: dict | None = None, drop: str | None = None) -> Path:
    """A copy of a table with other metadata or without one column (what an old or foreign writer leaves)."""
    table = pq.read_table(path)
    if drop is not None:
        table = table.drop_columns([drop])
    md = {} if meta is None else {b"dre": json.dumps(meta).encode()}
    pq.write_table(table.replace_schema_metadata(md), out)
    return out


# ------------------------------------------------------------------------------------------- round trips
def test_align_round_trip(tmp_path: Path) -> None:
    rows, meta = align_sample()
    path = tmp_path / tables.ALIGN_FILE
    ALIGN.write(path, rows, meta)
    df, got = ALIGN.read(path)
    assert list(df.columns) == list(ALIGN.names)
    assert got == {"schema": 1, **meta}
    assert _raw_meta(path).startswith('{"schema": 1, "backend": "fan", "size": 64')  # writer's key order kept
    assert df["face_index"].tolist() == [0, -1] and df["status"].tolist() == ["ok", "not_image"]
    assert df["landmarks"][0].dtype == np.float32 and np.array_equal(df["landmarks"][0], rows[0]["landmarks"])
    assert df["quad"][1] is None and df["output"][0] == "a.png" and pd.isna(df["output"][1])
    assert pq.read_schema(path).field("confidence").type == pa.float64()
    # the same table written from columns instead of rows gives the same bytes
    cols = {name: [r[name] for r in rows] for name in ALIGN.names}
    ALIGN.write(tmp_path / "cols.parquet", cols, meta)
    assert (tmp_path / "cols.parquet").read_bytes() == path.read_bytes()


def test_codes_round_trip(tmp_path: Path) -> None:
    rows, meta = codes_sample()
    CODES.write(tmp_path / "c.parquet", rows, meta)
    df, got = CODES.read(tmp_path / "c.parquet")
    assert got == {"schema": 1, **meta}
    assert list(json.loads(_raw_meta(tmp_path / "c.parquet"))) == sorted(got)  # sorted keys, as always
    for name in (*CODE_ORDER, "tform"):
        assert df[name][0].dtype == np.float32 and np.array_equal(df[name][0], rows[0][name]), name
        assert df[name][1] is None, name
    assert df["stem"].tolist() == ["a", "b"] and df["extractor"].tolist() == ["deca", "deca"]
    only, _ = CODES.read(tmp_path / "c.parquet", columns=("status", "message"))
    assert list(only.columns) == ["status", "message"]


def test_manifest_round_trip(tmp_path: Path) -> None:
    from dre.data import schema

    assert MANIFEST.version == schema.SCHEMA_VERSION  # the manifest repeats the LMDB's __meta__
    rows, meta = manifest_sample()
    MANIFEST.write(tmp_path / "m.parquet", rows, meta)
    df, got = MANIFEST.read(tmp_path / "m.parquet")
    assert got == meta and MANIFEST.read_meta(tmp_path / "m.parquet") == meta
    assert df["index"].tolist() == [0, 1] and df["box"][1].tolist() == [0, 64, 3, 60]
    assert pq.read_schema(tmp_path / "m.parquet").field("box").type == pa.list_(pa.int32())
    np.testing.assert_array_equal(np.stack(df["exp"].to_numpy())[1], rows[1]["exp"])


def test_edit_round_trip(tmp_path: Path) -> None:
    rows, meta = edit_sample()
    EDIT.write(tmp_path / "t.parquet", rows, meta)
    t = pq.read_table(tmp_path / "t.parquet")
    assert t.column("file").to_pylist() == ["a_exp.png"]
    assert json.loads(t.schema.metadata[b"dre"]) == {"schema": EDIT.version, **meta}
    assert pq.ParquetFile(tmp_path / "t.parquet").metadata.row_group(0).column(0).compression == "ZSTD"
    df, got = EDIT.read(tmp_path / "t.parquet")
    assert got["modes"] == ["exp"] and df["seed"].tolist() == [3] and df["mean_shape"].tolist() == [False]


def test_column_types_do_not_depend_on_the_data(tmp_path: Path) -> None:
    """An inversion edit has no noise seeds: the column is still int64 (not Parquet's 'null' type)."""
    rows, meta = edit_sample(noise_seed=None)
    EDIT.write(tmp_path / "inv.parquet", rows, meta)
    assert pq.read_schema(tmp_path / "inv.parquet").field("noise_seed").type == pa.int64()
    assert EDIT.read(tmp_path / "inv.parquet")[0]["noise_seed"].isna().all()


def test_edit_tables_of_either_version_are_read_for_scoring(tmp_path: Path) -> None:
    """Edit folders written before scores (version 1) or before rig edits (version 2) can still be scored."""
    from dre.score.metrics import BLOCKS
    from dre.tables import SCORE_BLOCKS

    assert SCORE_BLOCKS == BLOCKS
    rows, meta = edit_sample()
    EDIT.write(tmp_path / "v3.parquet", rows, meta)
    old_meta = {k: v for k, v in meta.items() if k != "sequences"}
    EDIT_V2.write(tmp_path / "v2.parquet", [{k: v for k, v in rows[0].items() if k in EDIT_V2.names}], old_meta)
    EDIT_V1.write(tmp_path / "v1.parquet", [{k: v for k, v in rows[0].items() if k in EDIT_V1.names}], old_meta)
    for name in ("v1.parquet", "v2.parquet", "v3.parquet"):
        got, got_meta = read_edit_rows(tmp_path / name)
        assert [r["file"] for r in got] == ["a_exp.png"] and got_meta["modes"] == ["exp"]
        assert "failed" not in got[0]


# ------------------------------------------------------------------------------------ readers refuse
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_wrong_schema_version_names_the_file(tmp_path: Path, kind: str) -> None:
    table, sample = SAMPLES[kind]
    rows, meta = sample()
    table.write(tmp_path / "good.parquet", rows, meta)
    stale = _rewrite(tmp_path / "good.parquet", tmp_path / "stale.parquet",
                     meta={**table.read_meta(tmp_path / "good.parquet"), table.version_key: table.version + 1})
    with pytest.raises(DreError, match=rf"--in {stale}: .*schema version {table.version + 1}.*rerun"):
        table.read(stale, flag="--in")
    with pytest.raises(DreError, match=str(stale)):
        table.read_meta(stale)
    bare = _rewrite(tmp_path / "good.parquet", tmp_path / "bare.parquet", meta=None)
    with pytest.raises(DreError, match=rf"{bare}: no 'dre' Parquet metadata"):
        table.read(bare)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_missing_column_names_the_file_and_column(tmp_path: Path, kind: str) -> None:
    table, sample = SAMPLES[kind]
    rows, meta = sample()
    table.write(tmp_path / "good.parquet", rows, meta)
    column = table.names[2]
    short = _rewrite(tmp_path / "good.parquet", tmp_path / "short.parquet", meta=table.read_meta(tmp_path / "good.parquet"),
                     drop=column)  # fmt: skip
    with pytest.raises(DreError, match=rf"{short}: missing column\(s\) {column} \(expected `dre "):
        table.read(short)
    kept = [c for c in table.names if c != column]
    assert list(table.read(short, columns=kept)[0].columns) == kept  # a reader asking for less still works


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(DreError, match=rf"--codes {tmp_path / 'none.parquet'}: file not found .*`dre extract`"):
        CODES.read(tmp_path / "none.parquet", flag="--codes")
    (tmp_path / "page.parquet").write_text("<html>not a table</html>")
    with pytest.raises(DreError, match=rf"{tmp_path / 'page.parquet'}: not a readable codes table"):
        CODES.read(tmp_path / "page.parquet")
    pq.write_table(pa.table({"status": ["ok"]}).replace_schema_metadata({"dre": "{oops"}), tmp_path / "json.parquet")
    with pytest.raises(DreError, match="'dre' Parquet metadata is not JSON"):
        ALIGN.read(tmp_path / "json.parquet")


def test_writers_refuse_undeclared_or_missing_columns_and_metadata(tmp_path: Path) -> None:
    rows, meta = align_sample()
    with pytest.raises(ValueError, match=r"undeclared \['typo'\]"):
        ALIGN.write(tmp_path / "a.parquet", [{**rows[0], "typo": 1}], meta)
    with pytest.raises(ValueError, match=r"missing \['quad'\]"):
        ALIGN.write(tmp_path / "a.parquet", {n: [rows[0][n]] for n in ALIGN.names if n != "quad"}, meta)
    with pytest.raises(ValueError, match="lacks size"):
        ALIGN.write(tmp_path / "a.parquet", rows, {k: v for k, v in meta.items() if k != "size"})
    with pytest.raises(ValueError, match="version 1"):
        ALIGN.write(tmp_path / "a.parquet", rows, {**meta, "schema": 2})
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_identify_and_status_counts_of_either_table(tmp_path: Path) -> None:
    rows, meta = codes_sample()
    CODES.write(tmp_path / "c.parquet", rows, meta)
    assert tables.identify(tmp_path / "c.parquet") is CODES
    assert status_counts(tmp_path / "c.parquet") == [("ok", 1, ""), ("unreadable", 1, "b.png: truncated")]
    mrows, mmeta = manifest_sample()
    MANIFEST.write(tmp_path / "m.parquet", mrows, mmeta)
    assert tables.identify(tmp_path / "m.parquet") is MANIFEST
    with pytest.raises(DreError, match=rf"--table {tmp_path / 'm.parquet'}: not align.parquet or codes table"):
        status_counts(tmp_path / "m.parquet")
    with pytest.raises(DreError, match="--table .*file not found"):
        status_counts(tmp_path / "nothing")


# --------------------------------------------------------------------------- image suffixes and hashing
def test_one_image_suffix_list(tmp_path: Path) -> None:
    from dre.align.imageio import list_album
    from dre.utils.images import IMAGE_SUFFIXES, list_images

    assert set(IMAGE_SUFFIXES) == {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
    names = ["a.JPG", "b.jpeg", "c.png", "d.bmp", "e.webp", "f.tif", "g.TIFF", ".hidden.png", "notes.md", "a.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    want = ["a.JPG", "b.jpeg", "c.png", "d.bmp", "e.webp", "f.tif", "g.TIFF"]
    assert [p.name for p in list_images(tmp_path)] == want
    images, others = list_album(tmp_path)  # what `dre align` aligns is what the workflow tracks
    assert [p.name for p in images] == want and [p.name for p in others] == ["notes.md"]
    smk = (Path(__file__).resolve().parents[1] / "workflow/rules/common.smk").read_text()
    assert "from dre.utils.images import" in smk and '".tiff"' not in smk


def test_sha256_file_sees_an_atomic_replace(tmp_path: Path) -> None:
    import hashlib

    from dre.safety.atomic import atomic_write_bytes
    from dre.utils.hashing import sha256_file

    path = tmp_path / "asset.bin"
    path.write_bytes(b"A" * 1000)
    st = path.stat()
    assert sha256_file(path) == hashlib.sha256(b"A" * 1000).hexdigest()
    atomic_write_bytes(path, b"B" * 1000)  # same size; give it the very same modification time
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_file(path) == hashlib.sha256(b"B" * 1000).hexdigest()
