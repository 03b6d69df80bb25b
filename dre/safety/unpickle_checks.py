"""The checking half of the restricted unpickler: what the calls :mod:`dre.safety.unpickle` recorded received.

Each recorded ``Node`` is validated here once the stream has ended (what is checked, and why, is in
:mod:`dre.safety.unpickle`'s docstring), then built from bytes by this code. Nothing here is an entry
point: every caller goes through :mod:`dre.safety.unpickle`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from dre.errors import DreError

MAX_DEPTH = 200  # nesting of containers in the result
MAX_DIM = 1 << 40  # any single array/tensor dimension


class UnsafePickleError(DreError):
    """A pickle asked for something outside the allow-list, or its data does not add up."""


# legacy torch.save storage types -> (torch dtype name, element size)
STORAGES: dict[str, tuple[str, int]] = {
    "FloatStorage": ("float32", 4), "DoubleStorage": ("float64", 8), "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2), "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2), "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1), "BoolStorage": ("bool", 1),
}  # fmt: skip
_NUMERIC_CODES = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"}


class Global:
    """What a pickle gets for an allowed global: a name, never the real object."""

    __slots__ = ("name", "family", "role")

    def __init__(self, name: str, family: str, role: str) -> None:
        self.name, self.family, self.role = name, family, role


class Node:
    """A recorded call or instance: validated and built only after the stream has been read."""

    __slots__ = ("role", "name", "args", "state", "has_state")

    def __init__(self, role: str, name: str, args: tuple) -> None:
        self.role, self.name, self.args = role, name, args
        self.state: Any = None
        self.has_state = False


def describe(obj: Any) -> str:
    """A bounded description of a pickled value for error messages (never a huge repr)."""
    if isinstance(obj, Global):
        return f"the global {obj.name}"
    if isinstance(obj, Node):
        return f"a {obj.name} object"
    if isinstance(obj, int) and not isinstance(obj, bool) and obj.bit_length() > 64:
        return f"an int of {obj.bit_length()} bits"
    plain = isinstance(obj, (int, float, bool, type(None))) or (
        type(obj) is tuple and len(obj) <= 8 and all(type(v) is int and v.bit_length() <= 64 for v in obj))
    return (repr(obj) if plain else f"a {type(obj).__name__}")[:120]


class Builder:
    """Walks the recorded graph once (shared parts once, cycles refused) and builds plain values."""

    def __init__(self, where: str, budget: list[int],
                 parse_storage: Callable[[bytes, str, list[int]], tuple[str, bytes]]) -> None:  # fmt: skip
        self.where, self.budget, self.parse_storage = where, budget, parse_storage
        self.done: dict[int, Any] = {}
        self.active: set[int] = set()

    def at(self, path: str) -> str:
        """The file (and key) and, where known, the place inside the pickle, for messages."""
        return f"{self.where} at {path}" if path else self.where

    def fail(self, path: str, what: str) -> UnsafePickleError:
        return UnsafePickleError(f"{self.at(path)}: refused: {what}")

    def charge(self, n: int, path: str) -> None:
        self.budget[0] -= n
        if self.budget[0] < 0:
            raise self.fail(path, "the pickle expands to far more data than the file holds")

    def root(self, raw: Any, *, object_root: bool) -> Any:
        if not object_root:
            return self.value(raw, "")
        if not (isinstance(raw, Node) and raw.role == "reconstruct"):
            raise self.fail("", f"the .npy payload is {describe(raw)}, not an array")
        shape, dt, _fortran, items = self.array_parts(raw, "", allow_object=True)
        if dt != "object" or shape != () or type(items) is not list or len(items) != 1:
            raise self.fail("", "the .npy payload is not a 0-d object array (one pickled dict)")
        return self.value(items[0], "")

    def value(self, obj: Any, path: str) -> Any:
        t = type(obj)
        if obj is None or t in (bool, int, float, str, bytes):
            return obj
        key = id(obj)
        if key in self.done:
            return self.done[key]
        if key in self.active:
            raise self.fail(path, "the structure contains itself (recursive)")
        if len(self.active) >= MAX_DEPTH:
            raise self.fail(path, f"nested deeper than {MAX_DEPTH} levels")
        self.active.add(key)
        try:
            if t is list or t is tuple:
                out: Any = t(self.value(v, f"{path}[{i}]") for i, v in enumerate(obj))
            elif t is dict or t is OrderedDict:
                out = {}
                for k, v in obj.items():
                    k = self.dict_key(k, path)
                    out[k] = self.value(v, f"{path}[{k!r}]"[:300])
            elif t is bytearray:
                out = bytes(obj)
            elif t is Node:
                out = self.node(obj, path)
            else:
                raise self.fail(path, f"{describe(obj)} is not an allowed value")
        finally:
            self.active.discard(key)
        self.done[key] = out
        return out

    def dict_key(self, k: Any, path: str) -> Any:
        plain = (type(None), bool, int, float, str, bytes)
        if type(k) in plain or (type(k) is tuple and all(type(x) in plain for x in k)):
            return k
        raise self.fail(path, f"a dict key is {describe(k)}")

    def node(self, node: Node, path: str) -> Any:
        role = node.role
        if role == "reconstruct":
            shape, dt, fortran, raw = self.array_parts(node, path, allow_object=False)
            return self.array(raw, dt, shape, fortran, path)
        if role == "scalar":
            a = node.args
            if len(a) != 2 or not (isinstance(a[0], Node) and a[0].role == "dtype") or type(a[1]) not in (bytes, str):
                raise self.fail(path, f"{node.name} with unexpected arguments")
            dt = self.dtype(a[0], path, allow_object=False)
            return self.array(a[1], dt, (), False, path)[()]
        if role == "stub":
            st = node.state if node.has_state else None
            x = self.value(st.get("x"), path + ".x") if type(st) is dict else None
            if not isinstance(x, np.ndarray):
                raise self.fail(path, f"the chumpy object {node.name} holds no stored array (an expression needs "
                                "chumpy to evaluate); is this the FLAME 2020 generic_model.pkl?")  # fmt: skip
            return x
        if role == "sparse":
            return self.sparse(node, path)
        if role in ("rebuild_v2", "rebuild_v1", "from_type"):
            return self.tensor(node, path)
        raise self.fail(path, f"a bare {node.name} object is not an allowed value")

    # ---- numpy
    def dtype(self, node: Node, path: str, *, allow_object: bool) -> Any:
        a, st = node.args, node.state
        if not (len(a) == 3 and type(a[0]) is str and all(type(v) in (bool, int) and v in (0, 1) for v in a[1:])):
            raise self.fail(path, "numpy.dtype called with unexpected arguments")
        if not node.has_state or len(st) not in (8, 9) or st[0] not in (3, 4) or (len(st) == 9 and st[8] is not None):
            raise self.fail(path, f"dtype {a[0][:20]!r} without a plain version-3 state")
        _v, endian, sub, names, fields, elsize, align, flags = st[:8]
        if sub is not None or names is not None or fields is not None:
            raise self.fail(path, f"dtype {a[0][:20]!r} is structured or a sub-array (only plain numeric dtypes)")
        if a[0] in ("O8", "O4") and allow_object and (endian, elsize, align, flags) == ("|", -1, -1, 63):
            return "object"
        if (elsize, align, flags) != (-1, -1, 0) or endian not in ("<", ">", "=", "|"):
            raise self.fail(path, f"dtype {a[0][:20]!r} with forged flags/size ({describe(flags)}, {describe(elsize)})")
        return plain_dtype(a[0] if endian in ("=", "|") else endian + a[0], self.at(path))

    def array_parts(self, node: Node, path: str, *, allow_object: bool) -> tuple[tuple, Any, bool, Any]:
        a, st = node.args, node.state
        if not (len(a) == 3 and isinstance(a[0], Global) and a[0].role == "ndarray" and type(a[1]) is tuple
                and type(a[2]) in (bytes, str)):  # fmt: skip
            raise self.fail(path, f"{node.name} called with unexpected arguments")
        if not node.has_state or len(st) not in (4, 5) or (len(st) == 5 and st[0] != 1):
            raise self.fail(path, "array state is not (version 1, shape, dtype, fortran, data)")
        shape, dtn, fortran, raw = st[-4:]
        if not (isinstance(dtn, Node) and dtn.role == "dtype") or type(fortran) not in (bool, int) or fortran not in (0, 1):
            raise self.fail(path, "array state has no numpy dtype or a bad order flag")
        return checked_shape(shape, self.at(path)), self.dtype(dtn, path, allow_object=allow_object), bool(fortran), raw

    def array(self, raw: Any, dt: Any, shape: tuple, fortran: bool, path: str) -> np.ndarray:
        if dt == "object":
            raise self.fail(path, "an object array (only numeric and bool arrays are allowed)")
        if type(raw) is str:
            self.charge(len(raw), path)
            try:
                raw = raw.encode("latin1")
            except UnicodeEncodeError:
                raise self.fail(path, "array data is text that is not latin-1 bytes") from None
        if type(raw) is not bytes:
            raise self.fail(path, f"array data is {describe(raw)}, not bytes")
        self.charge(len(raw), path)
        return array_from_bytes(raw, dt, shape, fortran, self.at(path))

    def sparse(self, node: Node, path: str) -> np.ndarray:
        st = node.state if node.has_state and type(node.state) is dict else {}
        parts = {k: self.value(st.get(k), f"{path}.{k}") for k in ("data", "indices", "indptr")}
        shape = st.get("_shape", st.get("shape"))
        if not all(isinstance(v, np.ndarray) and v.ndim == 1 for v in parts.values()) or not (
            type(shape) is tuple and len(shape) == 2 and all(type(d) is int and 0 <= d < 1 << 31 for d in shape)
        ):
            raise self.fail(path, f"sparse matrix {node.name} lacks 1-d data/indices/indptr or a 2-d shape")
        data, indices, indptr = parts["data"], parts["indices"], parts["indptr"]
        csc = "csc" in node.name
        n_major, n_minor = (shape[1], shape[0]) if csc else shape
        if (indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu" or data.dtype.kind == "c"
                or len(indptr) != n_major + 1 or len(indices) != len(data) or (len(indptr) and indptr[0] != 0)
                or np.any(np.diff(indptr.astype(np.int64)) < 0) or indptr[-1] != len(indices)
                or (len(indices) and (indices.min() < 0 or indices.max() >= n_minor))):  # fmt: skip
            raise self.fail(path, f"inconsistent sparse matrix {node.name} of shape {shape}")
        self.charge(shape[0] * shape[1] * data.dtype.itemsize, path)
        dense = np.zeros(shape, dtype=data.dtype)
        major = np.repeat(np.arange(n_major), np.diff(indptr.astype(np.int64)))
        np.add.at(dense, (indices, major) if csc else (major, indices), data)
        return dense

    # ---- torch
    def tensor(self, node: Node, path: str) -> Any:
        role, a = node.role, node.args
        if role == "from_type":
            ok_state = len(a) == 4 and (a[3] is None or (type(a[3]) in (dict, OrderedDict) and not a[3]))
            if not (ok_state and isinstance(a[0], Global) and a[0].role in ("rebuild_v2", "rebuild_v1")
                    and isinstance(a[1], Global) and a[1].role == "tensor_type" and type(a[2]) is tuple):  # fmt: skip
                raise self.fail(path, f"{node.name} for something other than a plain tensor")
            role, a = a[0].role, a[2]
        if role == "rebuild_v2":
            hooks = a[5] if len(a) >= 6 else None
            if not (len(a) in (6, 7) and type(a[4]) is bool and (hooks is None or (type(hooks) in (dict, OrderedDict)
                    and not hooks)) and (len(a) == 6 or a[6] is None or a[6] == {})):  # fmt: skip
                raise self.fail(path, "tensor rebuild with unexpected arguments (backward hooks or metadata)")
        elif len(a) != 4:
            raise self.fail(path, "tensor rebuild with unexpected arguments")
        storage, offset, size, stride = a[:4]
        if not (isinstance(storage, Node) and storage.role == "from_bytes" and len(storage.args) == 1
                and type(storage.args[0]) in (bytes, str)):  # fmt: skip
            raise self.fail(path, f"tensor storage is {describe(storage)}, not torch.storage._load_from_bytes(bytes)")
        size, stride = checked_shape(size, self.at(path)), checked_shape(stride, self.at(path))
        if len(size) != len(stride) or type(offset) is not int or offset < 0:
            raise self.fail(path, f"tensor of size {size} with stride {stride} and offset {describe(offset)}")
        sid = id(storage)
        if sid not in self.done:
            blob = storage.args[0]
            self.done[sid] = self.parse_storage(blob.encode("latin1") if type(blob) is str else blob, self.at(path),
                                                self.budget)  # fmt: skip
        stype, raw = self.done[sid]
        tname, elsize = STORAGES[stype]
        numel = len(raw) // elsize
        need = offset if 0 in size else offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
        if need > numel:
            raise self.fail(path, f"tensor of size {size}, stride {stride}, offset {offset} reaches element "
                            f"{need - 1} of a storage of {numel}")  # fmt: skip
        try:
            import torch
        except ImportError:
            raise self.fail(path, "the pickle holds torch tensors and torch is not installed here") from None
        self.charge(math.prod(size) * elsize + len(raw), path)
        base_dtype = torch.uint8 if tname == "bool" else getattr(torch, tname)
        base = torch.frombuffer(bytearray(raw), dtype=base_dtype) if raw else torch.empty(0, dtype=base_dtype)
        out = torch.as_strided(base, size, stride, offset).clone()
        return out != 0 if tname == "bool" else out


def checked_shape(shape: Any, where: str) -> tuple[int, ...]:
    """``shape`` when it is a tuple of at most 32 sizes, each in ``0..MAX_DIM``; refused otherwise."""
    if type(shape) is not tuple or len(shape) > 32 or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape):
        raise UnsafePickleError(f"{where}: refused: array shape {describe(shape)} is not a tuple of sizes")
    return shape


def plain_dtype(text: str, where: str) -> np.dtype:
    """``np.dtype(text)`` for a plain numeric or bool type code only (e.g. ``<f4``, ``|u1``, ``b1``)."""
    code = text[1:] if text[:1] in ("<", ">", "=", "|") else text
    dt = np.dtype(text) if code in _NUMERIC_CODES else None
    if dt is None or dt.kind not in "biufc" or dt.fields is not None or dt.subdtype is not None or dt.hasobject:
        raise UnsafePickleError(f"{where}: refused: dtype {text[:40]!r} (only plain numeric and bool dtypes)")
    return dt


def array_from_bytes(raw: bytes, dt: np.dtype, shape: tuple, fortran: bool, where: str) -> np.ndarray:
    """A writable array owning a copy of ``raw``, whose length must be exactly shape × itemsize."""
    count = math.prod(shape)
    if count * dt.itemsize != len(raw):
        raise UnsafePickleError(f"{where}: refused: an array of shape {shape} and dtype {dt.str} needs "
                                f"{count * dt.itemsize} bytes; the file holds {len(raw)}")  # fmt: skip
    flat = np.frombuffer(raw, dtype=np.uint8 if dt.kind == "b" else dt, count=count)
    arr = flat.reshape(shape, order="F" if fortran else "C")
    return (arr != 0) if dt.kind == "b" else arr.copy(order="K")
