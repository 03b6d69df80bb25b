"""The one owner of every table passed between stages: columns, types, metadata and schema version.

Why one module: each stage hands the next a Parquet table (``align.parquet`` → extract and edit,
the codes table → pack and edit, the LMDB manifest → people with pandas, ``edit.parquet`` → ``dre score``,
the report and people; ``scores.parquet`` and ``attempts.parquet`` → the report and people). When every reader opened these files by hand, each checked (or forgot to check) columns
and metadata its own way, and a stale or foreign file failed deep inside a stage with a ``KeyError``.
Here each table is declared once; its writer fixes the column types (so a column never changes type
with its data) and its readers all fail the same way: a :class:`~dre.errors.DreError` naming the file
and what to do. Formats and column meanings: docs/ARCHITECTURE.md (``edit.parquet``: docs/edits.md).

Every table carries Parquet key-value metadata ``dre``: a JSON object holding the table's schema
version (under ``schema``; the manifest repeats the LMDB's ``__meta__`` and so uses ``schema_version``)
and run-level facts. A reader refuses another version instead of guessing.

pyarrow and pandas are imported inside the functions: the workflow and the CLI import this module cheaply.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from dre.errors import DreError
from dre.face3d.codes import CODE_ORDER
from dre.safety.atomic import atomic_path

if TYPE_CHECKING:  # annotations only: pyarrow builds the frames, so writers never load pandas
    import pandas as pd

META_KEY = "dre"
"""The Parquet key-value metadata key that holds each table's JSON metadata."""

PathLike = str | os.PathLike[str]


def _arrow_type(spec: str) -> "pa.DataType":
    """``"int64"``, ``"list<float32>"`` … → the pyarrow type (aliases as pyarrow spells them)."""
    if spec.startswith("list<") and spec.endswith(">"):
        return pa.list_(_arrow_type(spec[5:-1]))
    return pa.type_for_alias(spec)


@dataclass(frozen=True)
class Table:
    """One inter-stage table: what it is called, who writes it, its columns and its metadata.

    ``columns`` are (name, type) pairs in file order; ``meta_keys`` are the metadata keys every writer
    must provide (besides the version, which :meth:`write` adds); ``sort_meta`` keeps each table's
    historical JSON key order, so files stay byte-compatible with earlier writers.
    """

    name: str
    writer: str
    columns: tuple[tuple[str, str], ...]
    meta_keys: tuple[str, ...]
    version: int = 1
    version_key: str = "schema"
    sort_meta: bool = True
    compression: str = "snappy"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    # ------------------------------------------------------------------------------------- write
    def write(self, path: PathLike, data: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
              meta: Mapping[str, Any]) -> None:  # fmt: skip
        """Write the table atomically: ``data`` is a list of row dicts or a dict of column lists.

        Every declared column must be given and nothing else (a typo would otherwise become a column of
        nulls). A mismatch is a bug in the writing stage, hence ``ValueError`` rather than ``DreError``.
        """
        schema = pa.schema([(name, _arrow_type(spec)) for name, spec in self.columns])
        if isinstance(data, Mapping):
            self._check_names(set(data), "columns")
            table = pa.table({name: data[name] for name in self.names}, schema=schema)
        else:
            for row in data:
                self._check_names(set(row), "row keys")
            table = pa.Table.from_pylist(list(data), schema=schema)
        text = json.dumps(self._full_meta(meta), sort_keys=self.sort_meta)
        table = table.replace_schema_metadata({META_KEY: text})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, compression=self.compression)

    def _check_names(self, given: set[str], what: str) -> None:
        missing, extra = set(self.names) - given, given - set(self.names)
        if missing or extra:
            raise ValueError(f"{self.name}: {what} differ from the declared columns "
                             f"(missing {sorted(missing)}, undeclared {sorted(extra)})")  # fmt: skip

    def _full_meta(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        missing = [k for k in self.meta_keys if k not in meta]
        if missing:
            raise ValueError(f"{self.name}: metadata lacks {', '.join(missing)}")
        if self.version_key in meta:
            if meta[self.version_key] != self.version:
                raise ValueError(f"{self.name}: metadata says {self.version_key} {meta[self.version_key]!r}, "
                                 f"this table is version {self.version}")  # fmt: skip
            return dict(meta)
        return {self.version_key: self.version, **meta}

    # -------------------------------------------------------------------------------------- read
    def read(self, path: PathLike, *, columns: Sequence[str] | None = None,
             flag: str | None = None) -> tuple["pd.DataFrame", dict[str, Any]]:  # fmt: skip
        """The table (declared ``columns``, default all, in that order) and its metadata.

        ``flag`` (e.g. ``"--codes"``) prefixes every error message, so the user sees which option named
        the file. Undeclared extra columns are ignored.
        """
        path, where = Path(path), _where(path, flag)
        schema = self._schema(path, where)
        meta = self._meta(schema, where)
        want = list(self.names if columns is None else columns)
        unknown = [c for c in want if c not in self.names]
        if unknown:
            raise ValueError(f"{self.name} has no column(s) {', '.join(unknown)}")
        missing = [c for c in want if c not in schema.names]
        if missing:
            raise DreError(f"{where}: missing column(s) {', '.join(missing)} (expected {self.writer} output)")
        try:
            table = pq.read_table(path, columns=want)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise DreError(f"{where}: not a readable {self.name} ({exc})") from None
        return table.to_pandas(), meta

    def read_meta(self, path: PathLike, *, flag: str | None = None) -> dict[str, Any]:
        """Only the ``dre`` metadata (version checked), without reading any rows."""
        path, where = Path(path), _where(path, flag)
        return self._meta(self._schema(path, where), where)

    def _schema(self, path: Path, where: str) -> "pa.Schema":
        if not path.is_file():
            raise DreError(f"{where}: file not found (it is written by {self.writer})")
        return _read_schema(path, where, self.name)

    def _meta(self, schema: "pa.Schema", where: str) -> dict[str, Any]:
        raw = (schema.metadata or {}).get(META_KEY.encode())
        if raw is None:
            raise DreError(f"{where}: no '{META_KEY}' Parquet metadata (expected {self.writer} output: {self.name})")
        try:
            meta = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DreError(f"{where}: the '{META_KEY}' Parquet metadata is not JSON") from None
        if not isinstance(meta, dict):
            raise DreError(f"{where}: the '{META_KEY}' Parquet metadata is not a JSON object")
        found = meta.get(self.version_key)
        if found != self.version:
            raise DreError(f"{where}: {self.name} schema version {found!r}, but this dre reads version "
                           f"{self.version}; rerun {self.writer} to rewrite it")  # fmt: skip
        return meta


def _where(path: PathLike, flag: str | None) -> str:
    return f"{flag} {path}" if flag else str(path)


def _read_schema(path: Path, where: str, what: str) -> "pa.Schema":
    try:
        return pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for non-Parquet input
        raise DreError(f"{where}: not a readable {what} ({exc})") from None


_CODES = tuple((name, "list<float32>") for name in (*CODE_ORDER, "tform"))

ALIGN_FILE = "align.parquet"
ALIGN = Table(
    name=ALIGN_FILE,
    writer="`dre align`",
    columns=(
        ("source", "string"), ("face_index", "int64"), ("status", "string"), ("message", "string"),
        ("landmarks", "list<float32>"), ("aligned_landmarks", "list<float32>"), ("quad", "list<float32>"),
        ("confidence", "float64"), ("backend", "string"), ("output", "string"),
    ),  # fmt: skip
    meta_keys=("backend", "size", "already_aligned", "multi_face", "min_face", "transform_size"),
    sort_meta=False,
)
"""One row per input file (and per extra face): status, landmarks, quad, output image."""

CODES = Table(
    name="codes table",
    writer="`dre extract`",
    columns=(("image", "string"), ("stem", "string"), ("status", "string"), ("message", "string"),
             *_CODES, ("extractor", "string")),  # fmt: skip
    meta_keys=("extractor", "assets", "synthetic", "image_size"),
)
"""One row per aligned image: FLAME codes and crop transform (null unless status is ``ok``)."""

MANIFEST = Table(
    name="LMDB manifest",
    writer="`dre pack`",
    columns=(("index", "int64"), ("source", "string"), ("stem", "string"), ("box", "list<int32>"), *_CODES),
    meta_keys=("format", "count", "image_size", "extractor", "synthetic"),
    version_key="schema_version",  # the LMDB's own __meta__ (dre.data.schema), repeated
)
"""One row per LMDB sample; codes are null for legacy imports."""

SCORE_BLOCKS: tuple[str, ...] = ("exp", "jaw", "pose", "light")
"""The code blocks scores compare (``dre.score.metrics.BLOCKS``; a test keeps the two equal)."""

SCORE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("failure", "string"), ("failed", "bool"), ("noisy", "bool"), ("leaked", "bool"),
    ("transfer", "float64"), ("leakage", "float64"), ("shape_drift", "float64"), ("shape_to_album", "float64"),
    ("noise", "float64"), ("noise_source", "float64"), ("noise_excess", "float64"),
    *((f"transfer_{b}", "float64") for b in SCORE_BLOCKS),
    *((f"leak_{b}", "float64") for b in SCORE_BLOCKS),
    *((f"dist_{b}_{pair}", "float64") for b in SCORE_BLOCKS for pair in ("edit_source", "edit_target", "source_target")),
    ("dist_shape_edit_source", "float64"), ("dist_shape_edit_album", "float64"),
    ("landmarks_status", "string"), ("source_landmarks", "string"),
)  # fmt: skip
"""What a score adds to an edited picture's row (meanings: docs/scores.md)."""

DRAW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("attempt", "int64"), ("attempts", "int64"), ("attempt_seed", "int64"), ("retry_seeds", "list<int64>"),
)
"""Which draw an edited picture is (``dre edit --retry-failed``; docs/edits.md)."""

_EDIT_BASE = (
    ("source", "string"), ("source_stem", "string"), ("target", "string"), ("mode", "string"),
    ("seed", "int64"), ("noise_seed", "int64"), ("init", "string"), ("steps", "int64"), ("eta", "float64"),
    ("model", "string"), ("source_extractor", "string"), ("target_extractor", "string"),
    ("mean_shape", "bool"), ("file", "string"), ("buffers", "string"), ("synthetic", "bool"),
    *((name, "list<float64>") for name in CODE_ORDER),
)  # fmt: skip
_EDIT_META = ("modes", "sources", "target", "seed", "init", "steps", "eta", "model", "source_extractor",
              "target_extractor")  # fmt: skip

RIG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("sequence", "string"), ("frame", "int64"), ("params", "string"), ("target_frame", "string"),
)  # fmt: skip
"""Where a picture sits in a sweep or driven sequence (null for a still), the rig parameters it was made
with (JSON object ``{"pose.yaw": 20.0}``, ``{}`` for plain swaps) and the target frame its swaps read."""

EDIT_FILE = "edit.parquet"
EDIT = Table(
    name=EDIT_FILE,
    writer="`dre edit`",
    columns=(*_EDIT_BASE, *RIG_COLUMNS, *DRAW_COLUMNS, *SCORE_COLUMNS),
    meta_keys=(*_EDIT_META, "sequences"),
    version=3,
    compression="zstd",
)
"""One row per source × mode (× frame) of an edit: the edited codes, the rig parameters, the draw and the
picture's scores (null with ``--no-score``). Metadata ``sequences``: per sequence and source, its frames'
files, animations and flicker (docs/rig.md)."""

EDIT_V2 = Table(name=EDIT_FILE, writer="`dre edit`", columns=(*_EDIT_BASE, *DRAW_COLUMNS, *SCORE_COLUMNS),
                meta_keys=_EDIT_META, version=2, compression="zstd")  # fmt: skip
"""``edit.parquet`` as written before rig edits (no sequence or parameter columns): read, never written."""

EDIT_V1 = Table(name=EDIT_FILE, writer="`dre edit`", columns=_EDIT_BASE, meta_keys=_EDIT_META, version=1,
                compression="zstd")  # fmt: skip
"""``edit.parquet`` as written before scores existed: read (by ``dre score``), never written."""

SCORES_FILE = "scores.parquet"
SCORES = Table(
    name=SCORES_FILE,
    writer="`dre score`",
    columns=(("source", "string"), ("source_stem", "string"), ("target", "string"), ("mode", "string"),
             ("file", "string"), ("synthetic", "bool"), *SCORE_COLUMNS),  # fmt: skip
    meta_keys=("edits", "settings", "references", "source_extractor", "target_extractor", "synthetic"),
    compression="zstd",
)
"""One row per edited picture of a folder scored by ``dre score`` (the folder's own table is not touched)."""

ATTEMPTS_FILE = "attempts.parquet"
ATTEMPTS = Table(
    name=ATTEMPTS_FILE,
    writer="`dre edit`",
    columns=(("source_stem", "string"), ("mode", "string"), ("file", "string"), ("attempt", "int64"),
             ("seed", "int64"), ("init", "string"), ("kept", "bool"), *SCORE_COLUMNS),  # fmt: skip
    meta_keys=("synthetic", "retry_failed"),
    compression="zstd",
)
"""Every draw of every edited picture (first draws and re-draws of failures) with its seed and scores."""


def read_edit_rows(path: PathLike, *, flag: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows (base columns, and the rig columns from version 3) and metadata of an ``edit.parquet`` of any
    version, for scoring it."""
    table = EDIT
    if Path(path).is_file():
        raw = (_read_schema(Path(path), _where(path, flag), EDIT_FILE).metadata or {}).get(META_KEY.encode())
        try:
            found = json.loads(raw or b"{}").get("schema")
            table = {EDIT_V1.version: EDIT_V1, EDIT_V2.version: EDIT_V2}.get(found, EDIT)
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            pass  # EDIT.read below names the problem
    extra = [name for name, _ in RIG_COLUMNS] if table is EDIT else []  # sequences and target frames: version 3
    df, meta = table.read(path, columns=[name for name, _ in _EDIT_BASE] + extra, flag=flag)
    return df.to_dict("records"), meta


TABLES: tuple[Table, ...] = (ALIGN, CODES, MANIFEST, EDIT, SCORES, ATTEMPTS)


def identify(path: PathLike, *, among: Sequence[Table] = TABLES, flag: str | None = None) -> Table:
    """Which of ``among`` the file at ``path`` is, by its columns (for commands that take several kinds)."""
    path = Path(path)
    where = _where(path, flag)
    kinds = " or ".join(t.name for t in among)
    if not path.is_file():
        raise DreError(f"{where}: file not found (expected {kinds})")
    names = set(_read_schema(path, where, "Parquet file").names)
    for table in among:
        if set(table.names) <= names:
            return table
    raise DreError(f"{where}: not {kinds} (its columns: {', '.join(sorted(names))})")


__all__ = ["ALIGN", "ALIGN_FILE", "ATTEMPTS", "ATTEMPTS_FILE", "CODES", "DRAW_COLUMNS", "EDIT", "EDIT_FILE", "EDIT_V1",
           "EDIT_V2", "MANIFEST", "META_KEY", "RIG_COLUMNS", "SCORES", "SCORES_FILE", "SCORE_COLUMNS", "TABLES", "Table",
           "identify", "read_edit_rows"]
