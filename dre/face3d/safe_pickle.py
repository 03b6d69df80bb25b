"""Restricted unpicklers for the licensed pickles users supply (FLAME ``generic_model.pkl``,
DECA's ``landmark_embedding.npy``).

Why not ``pickle.load``: a pickle can call any importable function, so loading a file downloaded from a
mirror would run whatever it names. Why not ``chumpy``: FLAME 2020 stores several arrays as chumpy
``Ch`` objects, and chumpy no longer imports on Python >= 3.11 / numpy >= 1.24. So every global a pickle
names is looked up in a small allow-list; chumpy and scipy.sparse objects become inert stubs that are
converted to numpy arrays after loading, and anything else raises :class:`~dre.errors.DreError` naming
the global (``os.system`` in a crafted file is refused before anything runs).
"""

from __future__ import annotations

import collections
import copyreg
import io
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dre.errors import DreError

try:  # numpy >= 2 moved the private module; pickles name either path
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # pragma: no cover - numpy < 2
    from numpy.core.multiarray import _reconstruct as _np_reconstruct  # type: ignore[no-redef]
    from numpy.core.multiarray import scalar as _np_scalar  # type: ignore[no-redef]


class _Stub:
    """Inert stand-in for a class we must not (or cannot) import; keeps what the pickle gives it."""

    dre_global = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class ChumpyStub(_Stub):
    """A chumpy ``Ch`` (or subclass): its numeric payload is ``state['x']``."""


class SparseStub(_Stub):
    """A scipy.sparse matrix pickled by attribute dict (``data``, ``indices``, ``indptr``, ``_shape``)."""


_stub_cache: dict[tuple[type, str], type] = {}


def _stub_class(base: type, module: str, name: str) -> type:
    key = (base, f"{module}.{name}")
    if key not in _stub_cache:
        _stub_cache[key] = type(name, (base,), {"dre_global": f"{module}.{name}"})
    return _stub_cache[key]


def _checked_reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` limited to the classes this module can hand out."""
    if not (isinstance(cls, type) and issubclass(cls, (_Stub, np.ndarray))):
        raise DreError(f"pickle asks copyreg._reconstructor to build {cls!r}; refused")
    if base is object:
        return object.__new__(cls) if issubclass(cls, _Stub) else np.ndarray.__new__(cls, 0)
    if base is np.ndarray and issubclass(cls, np.ndarray):
        return copyreg._reconstructor(cls, base, state)
    raise DreError(f"pickle asks copyreg._reconstructor for base {base!r}; refused")


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``; only text codecs allowed."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"):
        raise DreError(f"pickle asks _codecs.encode with codec {encoding!r}; refused")
    return text.encode(encoding)


_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _NUMPY_GLOBALS[(_mod, "_reconstruct")] = _np_reconstruct
    _NUMPY_GLOBALS[(_mod, "scalar")] = _np_scalar
_NUMPY_GLOBALS[("numpy", "ndarray")] = np.ndarray
_NUMPY_GLOBALS[("numpy", "dtype")] = np.dtype
for _mod in ("copy_reg", "copyreg"):
    _NUMPY_GLOBALS[(_mod, "_reconstructor")] = _checked_reconstructor
for _mod in ("__builtin__", "builtins"):
    _NUMPY_GLOBALS[(_mod, "object")] = object
    _NUMPY_GLOBALS[(_mod, "set")] = set  # chumpy's Ch state holds an (empty) set
    _NUMPY_GLOBALS[(_mod, "frozenset")] = frozenset
_NUMPY_GLOBALS[("_codecs", "encode")] = _latin1_encode

_SPARSE_MODULES = {"scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr"}
_SPARSE_NAMES = {"csc_matrix", "csr_matrix", "csc_array", "csr_array"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only from :data:`_NUMPY_GLOBALS` plus ``extra``.

    ``chumpy=True`` maps every ``chumpy.*`` class to :class:`ChumpyStub` and scipy csc/csr matrices to
    :class:`SparseStub`; :func:`to_numpy` turns them into arrays afterwards.
    """

    def __init__(
        self,
        file: Any,
        *,
        what: str,
        chumpy: bool = False,
        extra: dict[tuple[str, str], Any] | None = None,
        encoding: str = "latin1",
    ) -> None:
        super().__init__(file, encoding=encoding)
        self._what = what
        self._chumpy = chumpy
        self._allowed = dict(_NUMPY_GLOBALS)
        if extra:
            self._allowed.update(extra)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if self._chumpy and (module == "chumpy" or module.startswith("chumpy.")):
            return _stub_class(ChumpyStub, module, name)
        if self._chumpy and module in _SPARSE_MODULES and name in _SPARSE_NAMES:
            return _stub_class(SparseStub, module, name)
        raise DreError(
            f"{self._what}: refusing to unpickle the global {module}.{name} (only numpy arrays, chumpy "
            "arrays, scipy sparse matrices and torch tensors are allowed in this file); the file is not "
            "the expected asset or has been tampered with"
        )


def _sparse_to_dense(stub: SparseStub, what: str) -> np.ndarray:
    st = stub.state if isinstance(stub.state, dict) else {}
    shape = st.get("_shape", st.get("shape"))
    try:
        data = np.asarray(st["data"])
        indices = np.asarray(st["indices"], dtype=np.int64)
        indptr = np.asarray(st["indptr"], dtype=np.int64)
        rows, cols = (int(shape[0]), int(shape[1]))
    except (KeyError, TypeError, IndexError) as exc:
        raise DreError(f"{what}: sparse matrix {stub.dre_global} lacks data/indices/indptr/shape ({exc})") from exc
    fmt = "csc" if "csc" in stub.dre_global else "csr"
    n_major = cols if fmt == "csc" else rows
    if indptr.shape != (n_major + 1,) or indptr[-1] != len(indices) or len(indices) != len(data):
        raise DreError(f"{what}: inconsistent {fmt} sparse matrix {stub.dre_global} of shape {shape}")
    dense = np.zeros((rows, cols), dtype=data.dtype)
    major = np.repeat(np.arange(n_major), np.diff(indptr))
    if fmt == "csc":
        np.add.at(dense, (indices, major), data)
    else:
        np.add.at(dense, (major, indices), data)
    return dense


def to_numpy(obj: Any, what: str) -> Any:
    """Replace chumpy/sparse stubs (recursively in dicts, lists, tuples) by numpy arrays."""
    if isinstance(obj, ChumpyStub):
        st = obj.state
        if isinstance(st, dict) and "x" in st:
            return np.asarray(to_numpy(st["x"], what))
        raise DreError(
            f"{what}: the chumpy object {obj.dre_global} is an expression, not a stored array; it cannot be "
            "evaluated without chumpy. Is this the FLAME 2020 generic_model.pkl?"
        )
    if isinstance(obj, SparseStub):
        return _sparse_to_dense(obj, what)
    if isinstance(obj, dict):
        return {k: to_numpy(v, what) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_numpy(v, what) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_numpy(v, what) for v in obj)
    return obj


def load_chumpy_pickle(path: str | Path) -> Any:
    """Load a SMPL-family model pickle (FLAME ``generic_model.pkl``) without chumpy or scipy.

    Returns the pickled object with every chumpy array and scipy csc/csr matrix replaced by a dense
    numpy array.
    """
    path = Path(path)
    what = str(path)
    with open(path, "rb") as fh:
        try:
            obj = RestrictedUnpickler(fh, what=what, chumpy=True).load()
        except DreError:
            raise
        except Exception as exc:  # truncated file, wrong format, ...
            raise DreError(f"{what}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    return to_numpy(obj, what)


# --- torch tensors inside plain pickles (landmark_embedding.npy) -----------------------------------


def _torch_globals() -> dict[tuple[str, str], Any]:
    """Tensor rebuild functions, with storage bytes loaded through ``torch.load(weights_only=True)``."""
    import torch
    import torch._utils

    def load_storage_bytes(b: bytes | str) -> Any:
        if isinstance(b, str):  # a Python 2 pickle's bytes arrive latin1-decoded
            b = b.encode("latin1")
        return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)

    def rebuild_from_type(func: Callable[..., Any], new_type: type, args: tuple, state: Any) -> Any:
        if new_type is not torch.Tensor:
            raise DreError(f"pickle asks to rebuild a tensor of type {new_type!r}; refused")
        return func(*args)

    return {
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch.storage", "_load_from_bytes"): load_storage_bytes,
        ("torch._tensor", "_rebuild_from_type_v2"): rebuild_from_type,
        ("torch", "Tensor"): torch.Tensor,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }


def load_npy_with_tensors(path: str | Path) -> Any:
    """Load a ``.npy`` file whose object array holds numpy arrays and torch tensors (DECA's
    ``landmark_embedding.npy``), the way ``np.load(allow_pickle=True)`` would, but refusing any other
    global. Plain numeric ``.npy`` files are loaded with ``allow_pickle=False``.
    """
    path = Path(path)
    what = str(path)
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        except ValueError as exc:
            raise DreError(f"{what}: not a .npy file ({exc})") from exc
        if not dtype.hasobject:
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
        try:
            arr = RestrictedUnpickler(fh, what=what, extra=_torch_globals()).load()
        except DreError:
            raise
        except Exception as exc:
            raise DreError(f"{what}: unreadable pickled .npy payload ({type(exc).__name__}: {exc})") from exc
    if isinstance(arr, np.ndarray) and arr.shape == () and arr.dtype == object:
        return arr.item()
    return arr
