"""The project's one restricted unpickler: FLAME pickles, object ``.npy`` files, original LMDB values.

Why not ``pickle.load``: a pickle names functions and the unpickler calls them, so a file from a mirror
runs whatever it names. Filtering the *names* is not enough either: numpy's own ``dtype.__setstate__``
and ``_reconstruct`` trust their arguments, and a pickle that only uses those can forge a dtype whose
object field has its flags cleared, so raw bytes are read as object pointers (a segmentation fault).

So nothing a pickle names is ever called. Each allowed global maps to an inert :class:`_Global` marker;
``REDUCE``/``NEWOBJ``/``BUILD`` on a marker only *record* a :class:`_Node` (which global, which arguments,
which state). After the stream ends, :class:`_Builder` walks the recorded graph, validates every
descriptor (plain numeric or bool dtype, shape × itemsize equal to the data length, tensor sizes and
strides inside their storage) and builds the values itself from bytes, with ``np.frombuffer`` and
``torch.frombuffer``. Anything else — an unknown global, ``BUILD`` on anything but a recorded object,
persistent ids, extension codes, out-of-band buffers, a recursive structure — raises
:class:`UnsafePickleError` (a :class:`~dre.errors.DreError`) naming the file, the key where known and
the offending global or opcode. The pure-Python unpickler is used because it lets every opcode be
overridden; the files are small enough (FLAME: ~50 MB of few, large strings) that its speed is no issue.

What may come out: ``None``, bool, int, float, str, bytes, numeric/bool numpy arrays and scalars, CPU
torch tensors, and lists, tuples and dicts of these. chumpy arrays (FLAME 2020 stores several) become
their numpy payload and scipy csc/csr matrices become dense arrays, so neither library is needed.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from dre.errors import DreError

__all__ = ["UnsafePickleError", "inert_class", "load_flame_pickle", "load_npy", "load_npy_bytes", "load_tensor_pickle",
           "loads"]

MAX_FILE_BYTES = 4 << 30  # no asset we read is near this; a bigger file is not what it claims to be
MAX_DEPTH = 200  # nesting of containers in the result
MAX_DIM = 1 << 40  # any single array/tensor dimension
TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # legacy torch.save stream (what torch.storage._load_from_bytes holds)


class UnsafePickleError(DreError):
    """A pickle asked for something outside the allow-list, or its data does not add up."""


# ------------------------------------------------------------------------------------- allow-list
# (module, name) -> (family, role). A loader accepts some families; roles say what a call records.
_TABLE: dict[tuple[str, str], tuple[str, str]] = {}
for _m in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _TABLE[(_m, "_reconstruct")] = ("numpy", "reconstruct")
    _TABLE[(_m, "scalar")] = ("numpy", "scalar")
_TABLE[("numpy", "ndarray")] = ("numpy", "ndarray")
_TABLE[("numpy", "dtype")] = ("numpy", "dtype")
_TABLE[("_codecs", "encode")] = ("text", "encode")  # how protocol-2 pickles spell bytes
for _m in ("copy_reg", "copyreg"):
    _TABLE[(_m, "_reconstructor")] = ("chumpy", "reconstructor")
for _m in ("__builtin__", "builtins"):
    _TABLE[(_m, "object")] = ("chumpy", "object")
    _TABLE[(_m, "set")] = ("chumpy", "set")  # chumpy's Ch state holds a set (ignored)
    _TABLE[(_m, "frozenset")] = ("chumpy", "set")
    _TABLE[(_m, "bytes")] = ("text", "bytes")  # protocols < 3 spell b"" as bytes()
_TABLE[("torch._utils", "_rebuild_tensor_v2")] = ("torch", "rebuild_v2")
_TABLE[("torch._utils", "_rebuild_tensor")] = ("torch", "rebuild_v1")
_TABLE[("torch._tensor", "_rebuild_from_type_v2")] = ("torch", "from_type")
_TABLE[("torch.storage", "_load_from_bytes")] = ("torch", "from_bytes")
_TABLE[("torch", "Tensor")] = ("torch", "tensor_type")
_TABLE[("collections", "OrderedDict")] = ("torch", "odict")  # a tensor's (empty) backward hooks
# legacy torch.save storage types -> (torch dtype name, numpy dtype or None, element size)
_STORAGES: dict[str, tuple[str, str | None, int]] = {
    "FloatStorage": ("float32", "<f4", 4), "DoubleStorage": ("float64", "<f8", 8),
    "HalfStorage": ("float16", "<f2", 2), "BFloat16Storage": ("bfloat16", None, 2),
    "LongStorage": ("int64", "<i8", 8), "IntStorage": ("int32", "<i4", 4), "ShortStorage": ("int16", "<i2", 2),
    "CharStorage": ("int8", "|i1", 1), "ByteStorage": ("uint8", "|u1", 1), "BoolStorage": ("bool", "|b1", 1),
}  # fmt: skip
for _s in _STORAGES:
    _TABLE[("torch", _s)] = ("storage", _s)
_SPARSE_MODULES = {"scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr"}
_SPARSE_NAMES = {"csc_matrix", "csr_matrix", "csc_array", "csr_array"}
_NUMERIC_CODES = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"}
_CODECS = {"latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"}

FAMILIES_FLAME = frozenset({"numpy", "chumpy", "text"})
FAMILIES_NPY = frozenset({"numpy", "torch", "text"})
FAMILIES_TENSOR = frozenset({"torch", "text"})


class _Global:
    """What a pickle gets for an allowed global: a name, never the real object."""

    __slots__ = ("name", "family", "role")

    def __init__(self, name: str, family: str, role: str) -> None:
        self.name, self.family, self.role = name, family, role


class _Node:
    """A recorded call or instance: validated and built only after the stream has been read."""

    __slots__ = ("role", "name", "args", "state", "has_state")

    def __init__(self, role: str, name: str, args: tuple) -> None:
        self.role, self.name, self.args = role, name, args
        self.state: Any = None
        self.has_state = False


def _short(obj: Any) -> str:
    """A bounded description of a pickled value for error messages (never a huge repr)."""
    if isinstance(obj, _Global):
        return f"the global {obj.name}"
    if isinstance(obj, _Node):
        return f"a {obj.name} object"
    if isinstance(obj, int) and not isinstance(obj, bool) and obj.bit_length() > 64:
        return f"an int of {obj.bit_length()} bits"
    plain = isinstance(obj, (int, float, bool, type(None))) or (
        type(obj) is tuple and len(obj) <= 8 and all(type(v) is int and v.bit_length() <= 64 for v in obj))
    return (repr(obj) if plain else f"a {type(obj).__name__}")[:120]


class _Unpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Reads the opcode stream, recording instead of calling; see the module docstring."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, data: bytes, where: str, families: frozenset[str], budget: list[int]) -> None:
        self._bio = io.BytesIO(data)
        super().__init__(self._bio, encoding="latin1")
        self.where, self.families, self.budget = where, families, budget

    def refuse(self, what: str) -> UnsafePickleError:
        return UnsafePickleError(f"{self.where}: refused to unpickle: {what} (at byte {self._bio.tell()}); "
                                 "the file is not the expected asset or has been tampered with")  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        family, role = _TABLE.get((module, name), ("", ""))
        if not family and (module == "chumpy" or module.startswith("chumpy.")):
            family, role = "chumpy", "stub"
        if not family and module in _SPARSE_MODULES and name in _SPARSE_NAMES:
            family, role = "chumpy", "sparse"
        if family not in self.families:
            raise self.refuse(f"the global {module}.{name} is not allowed here (only numpy arrays, chumpy "
                              "arrays, scipy sparse matrices and torch tensors are)")  # fmt: skip
        return _Global(f"{module}.{name}", family, role)

    def persistent_load(self, pid: Any) -> Any:
        if "storage" not in self.families or type(pid) is not tuple:
            raise self.refuse("opcode PERSID/BINPERSID (persistent ids)")
        return _Node("storage_ref", "torch storage", pid)

    def charge(self, n: int) -> None:
        self.budget[0] -= n
        if self.budget[0] < 0:
            raise self.refuse("the pickle expands to far more data than the file holds")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if not isinstance(func, _Global) or type(args) is not tuple:
            raise self.refuse(f"opcode REDUCE calling {_short(func)}")
        self.stack[-1] = self.call(func, args)

    def call(self, func: _Global, args: tuple) -> Any:
        role = func.role
        if role in ("reconstruct", "dtype", "scalar", "rebuild_v2", "rebuild_v1", "from_type", "from_bytes", "set"):
            return _Node(role, func.name, args)
        if role == "encode":
            if not (1 <= len(args) <= 2 and all(type(a) is str for a in args)):
                raise self.refuse(f"opcode REDUCE calling {func.name} with {len(args)} non-text arguments")
            codec = args[1].lower().replace("_", "-") if len(args) == 2 else "utf-8"
            if codec not in _CODECS:
                raise self.refuse(f"opcode REDUCE calling {func.name} with the codec {args[1][:40]!r}")
            self.charge(len(args[0]))
            try:
                return args[0].encode(codec)
            except UnicodeEncodeError as exc:
                raise self.refuse(f"{func.name}: text does not encode as {codec} ({exc.reason})") from None
        if role == "reconstructor":
            if (len(args) == 3 and isinstance(args[0], _Global) and args[0].role in ("stub", "sparse")
                    and isinstance(args[1], _Global) and args[1].role == "object" and args[2] is None):
                return _Node(args[0].role, args[0].name, ())
            raise self.refuse(f"opcode REDUCE calling {func.name} for something other than a chumpy/sparse object")
        if role == "odict" and args == ():
            return OrderedDict()
        if role == "bytes" and args == ():
            return b""
        raise self.refuse(f"opcode REDUCE calling {func.name}")

    def new_object(self, cls: Any, args: Any, opcode: str) -> _Node:
        if isinstance(cls, _Global) and cls.role in ("stub", "sparse") and type(args) in (tuple, list):
            return _Node(cls.role, cls.name, ())
        raise self.refuse(f"opcode {opcode} creating {_short(cls)}")

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self.new_object(cls, args, "NEWOBJ"))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if kwargs != {}:
            raise self.refuse("opcode NEWOBJ_EX with keyword arguments")
        self.append(self.new_object(cls, args, "NEWOBJ_EX"))

    def _instantiate(self, klass: Any, args: list) -> None:  # INST and OBJ
        self.append(self.new_object(klass, tuple(args), "INST/OBJ"))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if not isinstance(inst, _Node) or inst.has_state:
            raise self.refuse(f"opcode BUILD on {_short(inst)}")
        if inst.role in ("stub", "sparse") and type(state) is dict:
            pass
        elif inst.role in ("reconstruct", "dtype") and type(state) is tuple:
            pass
        else:
            raise self.refuse(f"opcode BUILD on {_short(inst)} with {_short(state)} as state")
        inst.state, inst.has_state = state, True

    def load_ext(self) -> None:
        raise self.refuse("opcode EXT1/EXT2/EXT4 (copyreg extension codes)")

    def load_buffer(self) -> None:
        raise self.refuse("opcode NEXT_BUFFER/READONLY_BUFFER (out-of-band buffers)")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    for _op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = load_ext
    for _op in (pickle.NEXT_BUFFER, pickle.READONLY_BUFFER):
        dispatch[_op[0]] = load_buffer

    def load_one(self) -> Any:
        """One pickle from the stream (the next starts where it stopped); every failure is a DreError."""
        try:
            return self.load()
        except DreError:
            raise
        except Exception as exc:  # truncated, garbled: many exception types, all the file's fault
            msg = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise UnsafePickleError(f"{self.where}: not a readable pickle ({type(exc).__name__}: {msg})") from None



# ------------------------------------------------------------------------------------- validation
class _Builder:
    """Walks the recorded graph once (shared parts once, cycles refused) and builds plain values."""

    def __init__(self, where: str, budget: list[int], parse_storage: Any) -> None:
        self.where, self.budget, self.parse_storage = where, budget, parse_storage
        self.done: dict[int, Any] = {}
        self.active: set[int] = set()

    def fail(self, path: str, what: str) -> UnsafePickleError:
        return UnsafePickleError(f"{self.where}{' at ' + path if path else ''}: refused: {what}")

    def charge(self, n: int, path: str) -> None:
        self.budget[0] -= n
        if self.budget[0] < 0:
            raise self.fail(path, "the pickle expands to far more data than the file holds")

    def root(self, raw: Any, *, object_root: bool) -> Any:
        if not object_root:
            return self.value(raw, "")
        if not (isinstance(raw, _Node) and raw.role == "reconstruct"):
            raise self.fail("", f"the .npy payload is {_short(raw)}, not an array")
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
            elif t is _Node:
                out = self.node(obj, path)
            else:
                raise self.fail(path, f"{_short(obj)} is not an allowed value")
        finally:
            self.active.discard(key)
        self.done[key] = out
        return out

    def dict_key(self, k: Any, path: str) -> Any:
        if k is None or type(k) in (bool, int, float, str, bytes):
            return k
        if type(k) is tuple and all(x is None or type(x) in (bool, int, float, str, bytes) for x in k):
            return k
        raise self.fail(path, f"a dict key is {_short(k)}")

    def node(self, node: _Node, path: str) -> Any:
        role = node.role
        if role == "reconstruct":
            shape, dt, fortran, raw = self.array_parts(node, path, allow_object=False)
            return self.array(raw, dt, shape, fortran, path)
        if role == "scalar":
            a = node.args
            if len(a) != 2 or not (isinstance(a[0], _Node) and a[0].role == "dtype") or type(a[1]) not in (bytes, str):
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
    def dtype(self, node: _Node, path: str, *, allow_object: bool) -> Any:
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
            raise self.fail(path, f"dtype {a[0][:20]!r} with forged flags/size ({_short(flags)}, {_short(elsize)})")
        return plain_dtype(a[0] if endian in ("=", "|") else endian + a[0], f"{self.where} at {path}")

    def shape(self, shape: Any, path: str) -> tuple[int, ...]:
        return checked_shape(shape, f"{self.where} at {path}" if path else self.where)

    def array_parts(self, node: _Node, path: str, *, allow_object: bool) -> tuple[tuple, Any, bool, Any]:
        a, st = node.args, node.state
        if not (len(a) == 3 and isinstance(a[0], _Global) and a[0].role == "ndarray" and type(a[1]) is tuple
                and type(a[2]) in (bytes, str)):  # fmt: skip
            raise self.fail(path, f"{node.name} called with unexpected arguments")
        if not node.has_state or len(st) not in (4, 5) or (len(st) == 5 and st[0] != 1):
            raise self.fail(path, "array state is not (version 1, shape, dtype, fortran, data)")
        shape, dtn, fortran, raw = st[-4:]
        if not (isinstance(dtn, _Node) and dtn.role == "dtype") or type(fortran) not in (bool, int) or fortran not in (0, 1):
            raise self.fail(path, "array state has no numpy dtype or a bad order flag")
        return self.shape(shape, path), self.dtype(dtn, path, allow_object=allow_object), bool(fortran), raw

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
            raise self.fail(path, f"array data is {_short(raw)}, not bytes")
        self.charge(len(raw), path)
        return array_from_bytes(raw, dt, shape, fortran, f"{self.where} at {path}")

    def sparse(self, node: _Node, path: str) -> np.ndarray:
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
    def tensor(self, node: _Node, path: str) -> Any:
        role, a = node.role, node.args
        if role == "from_type":
            ok_state = len(a) == 4 and (a[3] is None or (type(a[3]) in (dict, OrderedDict) and not a[3]))
            if not (ok_state and isinstance(a[0], _Global) and a[0].role in ("rebuild_v2", "rebuild_v1")
                    and isinstance(a[1], _Global) and a[1].role == "tensor_type" and type(a[2]) is tuple):  # fmt: skip
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
        if not (isinstance(storage, _Node) and storage.role == "from_bytes" and len(storage.args) == 1
                and type(storage.args[0]) in (bytes, str)):  # fmt: skip
            raise self.fail(path, f"tensor storage is {_short(storage)}, not torch.storage._load_from_bytes(bytes)")
        size, stride = self.shape(size, path), self.shape(stride, path)
        if len(size) != len(stride) or type(offset) is not int or offset < 0:
            raise self.fail(path, f"tensor of size {size} with stride {stride} and offset {_short(offset)}")
        sid = id(storage)
        if sid not in self.done:
            blob = storage.args[0]
            self.done[sid] = self.parse_storage(blob.encode("latin1") if type(blob) is str else blob, path)
        stype, raw = self.done[sid]
        tname, _np_code, elsize = _STORAGES[stype]
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
        raise UnsafePickleError(f"{where}: refused: array shape {_short(shape)} is not a tuple of sizes")
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


# ------------------------------------------------------------------------------------- public API
def loads(data: bytes, where: str, families: frozenset[str], *, object_root: bool = False) -> Any:
    """Unpickle ``data`` allowing only ``families`` of globals; returns validated plain values.

    ``where`` names the file (and key) in every error. ``object_root``: the result may be a 0-d object
    array (what ``np.save`` pickles), which is unwrapped to its element.
    """
    data = bytes(data)
    budget = [4 * len(data) + (64 << 20)]
    up = _Unpickler(data, where, families, budget)
    raw = up.load_one()
    return _Builder(where, budget, _storage_parser(where, budget)).root(raw, object_root=object_root)


def _storage_parser(where: str, budget: list[int]) -> Any:
    """Parse the bytes of ``torch.storage._load_from_bytes`` (a legacy ``torch.save`` of one storage)
    into (storage type, raw little-endian bytes), reading its pickles with the same restrictions."""

    def parse(blob: bytes, path: str) -> tuple[str, bytes]:
        here = f"{where} at {path}" if path else where
        up = _Unpickler(blob, here, frozenset({"storage"}), budget)
        head = [up.load_one() for _ in range(3)]
        info = head[2]
        if head[0] != TORCH_MAGIC or head[1] != 1001 or type(info) is not dict or info.get("little_endian") is not True:
            raise UnsafePickleError(f"{here}: embedded tensor storage is not a little-endian legacy torch.save stream")
        ref = up.load_one()
        keys = up.load_one()
        if not (isinstance(ref, _Node) and ref.role == "storage_ref" and 5 <= len(ref.args) <= 6):
            raise UnsafePickleError(f"{here}: embedded payload is {_short(ref)}, not one tensor storage")
        tag, typ, key, _location, numel = ref.args[:5]
        view = ref.args[5] if len(ref.args) == 6 else None
        if (tag != "storage" or not isinstance(typ, _Global) or typ.family != "storage" or type(key) is not str
                or type(numel) is not int or not 0 <= numel <= MAX_DIM or view is not None or keys != [key]):
            raise UnsafePickleError(f"{here}: malformed storage record in the embedded torch.save stream")
        _dtype, _np, size = _STORAGES[typ.role]
        rest = blob[up._bio.tell():]
        if len(rest) < 8 or struct.unpack("<q", rest[:8])[0] != numel or len(rest) != 8 + numel * size:
            raise UnsafePickleError(f"{here}: storage of {numel} {typ.role} elements holds {max(len(rest) - 8, 0)} "
                                    "bytes of data")  # fmt: skip
        return typ.role, rest[8:]

    return parse


def _read_file(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DreError(f"{path}: {size} bytes; far bigger than any asset this loader reads")
        return path.read_bytes()
    except OSError as exc:
        raise DreError(f"{path}: cannot read ({exc.strerror or exc})") from None


def load_flame_pickle(path: str | Path) -> Any:
    """A SMPL-family model pickle (FLAME ``generic_model.pkl``, a Python 2 pickle with chumpy arrays and a
    scipy sparse joint regressor) as plain values: chumpy arrays and sparse matrices become numpy arrays."""
    path = Path(path)
    return loads(_read_file(path), str(path), FAMILIES_FLAME)


def load_npy(path: str | Path) -> Any:
    """A ``.npy`` file: numeric arrays from their bytes, a pickled 0-d object array (DECA's
    ``landmark_embedding.npy``: a dict of numpy arrays and torch tensors) through :func:`loads`."""
    path = Path(path)
    return load_npy_bytes(_read_file(path), str(path))


def load_npy_bytes(data: bytes, where: str) -> Any:
    """:func:`load_npy` on the file's bytes; ``where`` names it in errors."""
    fh = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"format version {version} is not supported")
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = header(fh)
    except Exception as exc:  # numpy's header parser raises several types for a garbled header
        raise DreError(f"{where}: not a .npy file ({str(exc).splitlines()[0][:200] if str(exc) else exc!r})") from None
    body = data[fh.tell():]
    if dtype == np.dtype(object):
        return loads(body, where, FAMILIES_NPY, object_root=True)
    dt = plain_dtype(dtype.str, where)
    return array_from_bytes(body, dt, checked_shape(shape, where), bool(fortran), where)


def load_tensor_pickle(data: bytes | memoryview, where: str) -> Any:
    """One pickled torch tensor (a value of an original DiffusionRig LMDB); ``where`` names file and key."""
    import torch

    obj = loads(bytes(data), where, FAMILIES_TENSOR)
    if not isinstance(obj, torch.Tensor):
        raise UnsafePickleError(f"{where}: the pickle holds {_short(obj)}, not a tensor")
    return obj


def inert_class(name: str) -> type:
    """A do-nothing class standing in for ``name`` (e.g. OmegaConf hyper-parameters in a Lightning
    checkpoint) so ``torch.load(weights_only=True)`` can read the weights beside it; it only keeps its state."""

    def __setstate__(self: Any, state: Any) -> None:
        self.state = state

    return type(name.rsplit(".", 1)[-1], (), {"dre_global": name, "__setstate__": __setstate__,
                                              "__init__": lambda self, *a, **k: None})  # fmt: skip
