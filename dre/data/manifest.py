"""The Parquet manifest beside each LMDB: one row per sample, for inspection with pandas.

An LMDB is opaque to everyday tools; the manifest answers "which file is sample 17, what were its
codes, how much of the frame do its buffers cover" without opening it. Its key-value metadata ``dre``
repeats the LMDB's ``__meta__`` so the two can be matched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dre.face3d.codes import CODE_ORDER
from dre.safety.atomic import atomic_path


@dataclass
class ManifestRows:
    """Column buffers filled while packing (codes columns hold None for legacy imports)."""

    index: list[int] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    stem: list[str] = field(default_factory=list)
    box: list[list[int]] = field(default_factory=list)
    codes: dict[str, list[np.ndarray | None]] = field(
        default_factory=lambda: {name: [] for name in (*CODE_ORDER, "tform")}
    )

    def add(self, index: int, source: str, stem: str, box: tuple[int, int, int, int],
            codes: dict[str, np.ndarray] | None) -> None:  # fmt: skip
        self.index.append(index)
        self.source.append(source)
        self.stem.append(stem)
        self.box.append(list(box))
        for name, col in self.codes.items():
            col.append(None if codes is None else np.asarray(codes[name], np.float32).reshape(-1))


def write_manifest(path: str | os.PathLike[str], rows: ManifestRows, meta: dict[str, Any]) -> None:
    """Write the manifest atomically (columns: index, source, stem, box [y0,y1,x0,x1], codes, tform)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    f32 = pa.list_(pa.float32())
    columns: dict[str, pa.Array] = {
        "index": pa.array(rows.index, pa.int64()),
        "source": pa.array(rows.source, pa.string()),
        "stem": pa.array(rows.stem, pa.string()),
        "box": pa.array(rows.box, pa.list_(pa.int32())),
    }
    for name, col in rows.codes.items():
        columns[name] = pa.array([None if v is None else v.tolist() for v in col], f32)
    table = pa.table(columns)
    table = table.replace_schema_metadata({"dre": json.dumps(meta, sort_keys=True)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_manifest_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``dre`` metadata of a manifest (the LMDB's ``__meta__`` at pack time)."""
    import pyarrow.parquet as pq

    md = pq.read_schema(path).metadata or {}
    return json.loads(md.get(b"dre", b"{}"))
