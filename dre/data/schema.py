"""The on-disk layout of a ``dre`` LMDB (schema version 1): keys, metadata and per-sample records.

Why this layout (compared with the original DiffusionRig LMDB, see docs/ARCHITECTURE.md):

* Self-describing: one JSON record ``__meta__`` says what every sample holds (schema version, sizes,
  buffer dtype/byte order/channel order, extractor, asset checksums, count, source hash, mean shape), so
  a reader never guesses and a stale or foreign LMDB fails loudly instead of training on garbage.
* Safe: nothing is pickled. Images are PNG, codes are raw float32, buffers raw float16.
* Compact and fast: the 9 buffer channels (rendered, normal, albedo) are stored as one little-endian
  float16 array cropped to the bounding box of their non-zero pixels. The background of every buffer is
  exactly 0 (each is multiplied by the coverage mask), so the crop is lossless, and the stored array is
  read with :func:`numpy.frombuffer` straight from the memory map (no copy, no parse).

Keys (ASCII): ``__meta__`` and, per sample ``i``, ``{i:07d}/image|buffers|codes|source``. The index comes
first so one sample's records sit next to each other in the B-tree.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import torch

from dre import __version__
from dre.errors import DreError
from dre.face3d.codes import CODE_DIMS, CODE_ORDER

SCHEMA_VERSION = 1
FORMAT_NAME = "dre-lmdb"
META_KEY = b"__meta__"

BUFFER_CHANNELS: tuple[str, ...] = (
    "rendered_r", "rendered_g", "rendered_b",
    "normal_x", "normal_y", "normal_z",
    "albedo_r", "albedo_g", "albedo_b",
)  # fmt: skip
"""The 9 condition channels in the original DiffusionRig order (rendered, normal, albedo)."""
NORMAL_X_CHANNEL = BUFFER_CHANNELS.index("normal_x")

BUFFER_DTYPE = np.dtype("<f2")
"""Little-endian IEEE half precision, whatever the writing machine's byte order."""
CODES_DTYPE = np.dtype("<f4")
CODES_LAYOUT: tuple[tuple[str, int], ...] = tuple((n, CODE_DIMS[n]) for n in CODE_ORDER) + (("tform", 9),)
CODES_WIDTH = sum(n for _, n in CODES_LAYOUT)  # 245

# Buffer record: 8-byte magic, then box (y0, y1, x0, x1) as little-endian uint16, then the array;
# 16 header bytes keep the fp16 payload 16-byte aligned relative to the value start.
BUFFER_MAGIC = b"DREBUF1\x00"
_BOX = struct.Struct("<4H")
BUFFER_HEADER_SIZE = len(BUFFER_MAGIC) + _BOX.size
assert BUFFER_HEADER_SIZE == 16

FP16_MAX = float(np.finfo(np.float16).max)


def sample_key(i: int, field: str) -> bytes:
    """Key of one record of sample ``i`` (``field`` is image, buffers, codes or source)."""
    return f"{i:07d}/{field}".encode("ascii")


# ---------------------------------------------------------------- metadata


def make_meta(
    *,
    count: int,
    image_size: int,
    extractor: str,
    assets: dict[str, str],
    synthetic: bool,
    source_hash: str | None,
    mean_shape: list[float] | None,
    has_codes: bool,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``__meta__`` record. Everything a reader needs to interpret the samples without guessing."""
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "count": int(count),
        "image_size": int(image_size),
        "image_format": "png",
        "buffers": {
            "dtype": "float16",
            "byteorder": "little",
            "channels": list(BUFFER_CHANNELS),
            "layout": "CHW, cropped to the bounding box of non-zero pixels (outside it every channel is 0)",
            "header": "16 bytes: magic DREBUF1\\0, then box y0,y1,x0,x1 as <u2",
        },
        "codes": {"dtype": "float32", "byteorder": "little", "layout": [list(p) for p in CODES_LAYOUT]}
        if has_codes
        else None,
        "extractor": extractor,
        "assets": dict(assets),
        "synthetic": bool(synthetic),
        "source_hash": source_hash,
        "mean_shape": None if mean_shape is None else [float(v) for v in mean_shape],
        "written_by": f"dre {__version__}",
    }
    if extra:
        meta.update(extra)
    return meta


def encode_meta(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True).encode("utf-8")


def decode_meta(raw: bytes | None, where: str) -> dict[str, Any]:
    """Parse and check ``__meta__``; ``where`` (the LMDB path) goes into every error message."""
    if raw is None:
        raise DreError(
            f"{where} has no '__meta__' record: it is not a dre LMDB (an original DiffusionRig LMDB must be "
            "converted first with `dre pack --import-legacy OLD.lmdb --out NEW.lmdb`)"
        )
    try:
        meta = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DreError(f"{where}: '__meta__' is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DreError(f"{where}: '__meta__' does not describe a {FORMAT_NAME} store")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DreError(
            f"{where} has schema version {version}, this dre reads version {SCHEMA_VERSION}; "
            "re-run `dre pack` to rebuild it"
        )
    buf = meta.get("buffers") or {}
    if buf.get("dtype") != "float16" or buf.get("byteorder") != "little" or buf.get("channels") != list(
        BUFFER_CHANNELS
    ):
        raise DreError(f"{where}: unsupported buffer layout in '__meta__': {buf}")
    for key in ("count", "image_size"):
        if not isinstance(meta.get(key), int) or meta[key] < 0:
            raise DreError(f"{where}: '__meta__' field {key!r} is missing or not a non-negative integer")
    return meta


# ---------------------------------------------------------------- buffers


def to_fp16(cond: np.ndarray, where: str) -> np.ndarray:
    """Round a float buffer stack to little-endian fp16, refusing values fp16 cannot hold.

    Values beyond ±65504 become inf in fp16, so one finiteness check after the conversion catches NaN,
    inf and overflow alike. Silent infs would poison training much later; failing here names the sample.
    Rounding is IEEE round-to-nearest-even, done by torch (vectorised; numpy emulates half precision
    and is ~10x slower); the check runs on the bit patterns (exponent all ones = inf or NaN).
    """
    if cond.dtype == BUFFER_DTYPE:
        half = np.ascontiguousarray(cond)
    else:
        half = torch.from_numpy(np.ascontiguousarray(cond, dtype=np.float32)).half().numpy().view(BUFFER_DTYPE)
    if ((half.view(np.uint16) & 0x7C00) == 0x7C00).any():
        raise DreError(f"{where}: buffers hold NaN, inf or values beyond the float16 range (±{FP16_MAX:g})")
    return half


def nonzero_box(cond: np.ndarray) -> tuple[int, int, int, int]:
    """Smallest (y0, y1, x0, x1) holding every non-zero value of a (C,H,W) stack; (0,0,0,0) when empty.

    For fp16 input the test runs on the bit patterns (±0 have no bits outside the sign bit).
    """
    nz = (cond.view(np.uint16) & 0x7FFF) != 0 if cond.dtype == BUFFER_DTYPE else cond != 0
    mask = nz.any(axis=0)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return 0, 0, 0, 0
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def encode_buffers(cond: np.ndarray, where: str) -> bytes:
    """(9,H,W) float buffers → record bytes (header + fp16 crop). Lossless apart from the fp16 rounding."""
    if cond.ndim != 3 or cond.shape[0] != len(BUFFER_CHANNELS):
        raise DreError(f"{where}: expected a (9,H,W) buffer stack, got shape {cond.shape}")
    if max(cond.shape[1:]) > 0xFFFF:
        raise DreError(f"{where}: buffers of {cond.shape[1:]} pixels are too large for schema {SCHEMA_VERSION}")
    half = to_fp16(cond, where)
    y0, y1, x0, x1 = nonzero_box(half)  # on the rounded values: tiny values that round to 0 need no room
    return BUFFER_MAGIC + _BOX.pack(y0, y1, x0, x1) + half[:, y0:y1, x0:x1].tobytes()


def decode_buffer_box(raw: memoryview | bytes, where: str) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Record → (box, (9,h,w) fp16 array). The array is a read-only view of ``raw`` (zero copy)."""
    if bytes(raw[: len(BUFFER_MAGIC)]) != BUFFER_MAGIC:
        raise DreError(f"{where}: buffer record has a wrong header (corrupt LMDB or another schema)")
    if len(raw) < BUFFER_HEADER_SIZE:
        raise DreError(f"{where}: buffer record size does not match its header ({len(raw)} bytes)")
    y0, y1, x0, x1 = _BOX.unpack_from(raw, len(BUFFER_MAGIC))
    h, w = y1 - y0, x1 - x0
    # the byte count first: np.frombuffer raises a bare ValueError on a record cut at an odd byte
    if h < 0 or w < 0 or len(raw) - BUFFER_HEADER_SIZE != len(BUFFER_CHANNELS) * h * w * BUFFER_DTYPE.itemsize:
        raise DreError(f"{where}: buffer record size does not match its box {(y0, y1, x0, x1)}")
    arr = np.frombuffer(raw, dtype=BUFFER_DTYPE, offset=BUFFER_HEADER_SIZE)
    return (y0, y1, x0, x1), arr.reshape(len(BUFFER_CHANNELS), h, w)


# ---------------------------------------------------------------- codes


def encode_codes(flat_codes: np.ndarray, tform: np.ndarray) -> bytes:
    """236 FLAME/DECA codes (CODE_ORDER, light row-major) + 3×3 tform → 245 little-endian float32."""
    flat = np.concatenate([np.asarray(flat_codes, np.float64).reshape(-1), np.asarray(tform, np.float64).reshape(-1)])
    if flat.size != CODES_WIDTH:
        raise ValueError(f"expected {CODES_WIDTH} code values, got {flat.size}")
    return flat.astype(CODES_DTYPE).tobytes()


def decode_codes(raw: memoryview | bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Record → (236 codes float32, 3×3 tform float32), both copies (they are tiny)."""
    arr = np.frombuffer(raw, dtype=CODES_DTYPE)
    if arr.size != CODES_WIDTH:
        raise DreError(f"{where}: codes record has {arr.size} values, expected {CODES_WIDTH}")
    arr = arr.astype(np.float32)
    return arr[: CODES_WIDTH - 9], arr[CODES_WIDTH - 9 :].reshape(3, 3)
