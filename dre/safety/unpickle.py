"""The project's one restricted unpickler: FLAME pickles, object ``.npy`` files, original LMDB values.

Why not ``pickle.load``: a pickle names functions and the unpickler calls them, so a file from a mirror
runs whatever it names. Filtering the *names* is not enough either: numpy's own ``dtype.__setstate__``
and ``_reconstruct`` trust their arguments, and a pickle that only uses those can forge a dtype whose
object field has its flags cleared, so raw bytes are read as object pointers (a segmentation fault).

So nothing a pickle names is ever called. Each allowed global maps to an inert ``Global`` marker;
``REDUCE``/``NEWOBJ``/``BUILD`` on a marker only *record* a ``Node`` (which global, which arguments,
which state). After the stream ends, :mod:`dre.safety.unpickle_checks` walks the recorded graph,
validates every descriptor (plain numeric or bool dtype, shape × itemsize equal to the data length,
tensor sizes and strides inside their storage) and builds the values itself from bytes, with
``np.frombuffer`` and ``torch.frombuffer``. Anything else — an unknown global, ``BUILD`` on anything
but a recorded object, persistent ids, extension codes, out-of-band buffers, a recursive structure — raises
:class:`UnsafePickleError` (a :class:`~dre.errors.DreError`) naming the file, the key where known and
the offending global or opcode. The pure-Python unpickler is used because it lets every opcode be
overridden; the files are small enough (FLAME: ~50 MB of few, large strings) that its speed is no issue.

What may come out: ``None``, bool, int, float, str, bytes, numeric/bool numpy arrays and scalars, CPU
torch tensors, and lists, tuples and dicts of these. chumpy arrays (FLAME 2020 stores several) become
their numpy payload and scipy csc/csr matrices become dense arrays, so neither library is needed.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from dre.errors import DreError
from dre.safety.unpickle_checks import (
    MAX_DIM,
    STORAGES,
    Builder,
    Global,
    Node,
    UnsafePickleError,
    array_from_bytes,
    checked_shape,
    describe,
    plain_dtype,
)

__all__ = ["UnsafePickleError", "inert_class", "load_flame_pickle", "load_npy", "load_npy_bytes", "load_tensor_pickle",
           "loads"]

MAX_FILE_BYTES = 4 << 30  # no asset we read is near this; a bigger file is not what it claims to be
TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # legacy torch.save stream (what torch.storage._load_from_bytes holds)


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
for _s in STORAGES:
    _TABLE[("torch", _s)] = ("storage", _s)
_SPARSE_MODULES = {"scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr"}
_SPARSE_NAMES = {"csc_matrix", "csr_matrix", "csc_array", "csr_array"}
_CODECS = {"latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"}

FAMILIES_FLAME = frozenset({"numpy", "chumpy", "text"})
FAMILIES_NPY = frozenset({"numpy", "torch", "text"})
FAMILIES_TENSOR = frozenset({"torch", "text"})


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
        return Global(f"{module}.{name}", family, role)

    def persistent_load(self, pid: Any) -> Any:
        if "storage" not in self.families or type(pid) is not tuple:
            raise self.refuse("opcode PERSID/BINPERSID (persistent ids)")
        return Node("storage_ref", "torch storage", pid)

    def charge(self, n: int) -> None:
        self.budget[0] -= n
        if self.budget[0] < 0:
            raise self.refuse("the pickle expands to far more data than the file holds")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if not isinstance(func, Global) or type(args) is not tuple:
            raise self.refuse(f"opcode REDUCE calling {describe(func)}")
        self.stack[-1] = self.call(func, args)

    def call(self, func: Global, args: tuple) -> Any:
        role = func.role
        if role in ("reconstruct", "dtype", "scalar", "rebuild_v2", "rebuild_v1", "from_type", "from_bytes", "set"):
            return Node(role, func.name, args)
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
            if (len(args) == 3 and isinstance(args[0], Global) and args[0].role in ("stub", "sparse")
                    and isinstance(args[1], Global) and args[1].role == "object" and args[2] is None):
                return Node(args[0].role, args[0].name, ())
            raise self.refuse(f"opcode REDUCE calling {func.name} for something other than a chumpy/sparse object")
        if role == "odict" and args == ():
            return OrderedDict()
        if role == "bytes" and args == ():
            return b""
        raise self.refuse(f"opcode REDUCE calling {func.name}")

    def new_object(self, cls: Any, args: Any, opcode: str) -> Node:
        if isinstance(cls, Global) and cls.role in ("stub", "sparse") and type(args) in (tuple, list):
            return Node(cls.role, cls.name, ())
        raise self.refuse(f"opcode {opcode} creating {describe(cls)}")

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
        if not isinstance(inst, Node) or inst.has_state:
            raise self.refuse(f"opcode BUILD on {describe(inst)}")
        if not ((inst.role in ("stub", "sparse") and type(state) is dict)
                or (inst.role in ("reconstruct", "dtype") and type(state) is tuple)):
            raise self.refuse(f"opcode BUILD on {describe(inst)} with {describe(state)} as state")
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
    return Builder(where, budget, _parse_storage).root(raw, object_root=object_root)


def _parse_storage(blob: bytes, here: str, budget: list[int]) -> tuple[str, bytes]:
    """Parse the bytes of ``torch.storage._load_from_bytes`` (a legacy ``torch.save`` of one storage)
    into (storage type, raw little-endian bytes), reading its pickles with the same restrictions."""
    up = _Unpickler(blob, here, frozenset({"storage"}), budget)
    head = [up.load_one() for _ in range(3)]
    info = head[2]
    if head[0] != TORCH_MAGIC or head[1] != 1001 or type(info) is not dict or info.get("little_endian") is not True:
        raise UnsafePickleError(f"{here}: embedded tensor storage is not a little-endian legacy torch.save stream")
    ref = up.load_one()
    keys = up.load_one()
    if not (isinstance(ref, Node) and ref.role == "storage_ref" and 5 <= len(ref.args) <= 6):
        raise UnsafePickleError(f"{here}: embedded payload is {describe(ref)}, not one tensor storage")
    tag, typ, key, _location, numel = ref.args[:5]
    view = ref.args[5] if len(ref.args) == 6 else None
    if (tag != "storage" or not isinstance(typ, Global) or typ.family != "storage" or type(key) is not str
            or type(numel) is not int or not 0 <= numel <= MAX_DIM or view is not None or keys != [key]):
        raise UnsafePickleError(f"{here}: malformed storage record in the embedded torch.save stream")
    _dtype, size = STORAGES[typ.role]
    rest = blob[up._bio.tell():]
    if len(rest) < 8 or struct.unpack("<q", rest[:8])[0] != numel or len(rest) != 8 + numel * size:
        raise UnsafePickleError(f"{here}: storage of {numel} {typ.role} elements holds {max(len(rest) - 8, 0)} "
                                "bytes of data")  # fmt: skip
    return typ.role, rest[8:]


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
        raise UnsafePickleError(f"{where}: the pickle holds {describe(obj)}, not a tensor")
    return obj


def inert_class(name: str) -> type:
    """A do-nothing class standing in for ``name`` (e.g. OmegaConf hyper-parameters in a Lightning
    checkpoint) so ``torch.load(weights_only=True)`` can read the weights beside it; it only keeps its state."""

    def __setstate__(self: Any, state: Any) -> None:
        self.state = state

    return type(name.rsplit(".", 1)[-1], (), {"dre_global": name, "__setstate__": __setstate__,
                                              "__init__": lambda self, *a, **k: None})  # fmt: skip
