"""Pickle payloads for the restricted-unpickler tests: valid seeds, hand-written hostile cases, mutations.

A case is ``(name, kind, payload)``; ``kind`` says which loader reads it: ``flame`` (FLAME's
``generic_model.pkl``), ``npy`` (an object ``.npy`` such as DECA's landmark embedding) or ``tensor``
(one value of an original DiffusionRig LMDB). Seeds come from our own writers (the synthetic FLAME
pickle with its chumpy stand-in, ``np.save`` of the synthetic landmark embedding, ``pickle.dumps`` of a
tensor as the original LMDB writer does); hostile cases are assembled opcode by opcode with :class:`Asm`.
"""

from __future__ import annotations

import functools
import io
import pickle
import pickletools
import random
import struct
from typing import Iterator

import numpy as np

Case = tuple[str, str, bytes]


# ------------------------------------------------------------------------------------- assembler
class Asm:
    """A few pickle opcodes as bytes, enough to write any hostile stream by hand."""

    MARK, STOP, NONE, TRUE, FALSE = b"(", b".", b"N", b"\x88", b"\x89"
    TUPLE, TUPLE1, TUPLE2, TUPLE3, EMPTY_TUPLE = b"t", b"\x85", b"\x86", b"\x87", b")"
    EMPTY_LIST, APPEND, APPENDS, EMPTY_DICT, SETITEM = b"]", b"a", b"e", b"}", b"s"
    REDUCE, BUILD, NEWOBJ, DUP, POP = b"R", b"b", b"\x81", b"2", b"0"

    @staticmethod
    def proto(n: int = 2) -> bytes:
        return b"\x80" + bytes([n])

    @staticmethod
    def glob(module: str, name: str) -> bytes:
        return b"c" + f"{module}\n{name}\n".encode()

    @staticmethod
    def u(text: str) -> bytes:
        raw = text.encode("utf-8")
        return b"X" + struct.pack("<I", len(raw)) + raw

    @staticmethod
    def b(data: bytes) -> bytes:
        return b"B" + struct.pack("<I", len(data)) + data

    @staticmethod
    def i(n: int) -> bytes:
        if -(1 << 31) <= n < (1 << 31):
            return b"J" + struct.pack("<i", n)
        raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw

    @staticmethod
    def put(k: int) -> bytes:
        return b"r" + struct.pack("<I", k)

    @staticmethod
    def get(k: int) -> bytes:
        return b"j" + struct.pack("<I", k)

    @classmethod
    def tup(cls, *items: bytes) -> bytes:
        return cls.MARK + b"".join(items) + cls.TUPLE

    @classmethod
    def call(cls, func: bytes, *args: bytes) -> bytes:
        return func + cls.tup(*args) + cls.REDUCE

    @classmethod
    def dtype(cls, code: str, state: bytes | None = None, *, endian: str = "<") -> bytes:
        """``numpy.dtype(code, False, True)`` + BUILD ``state`` (default: the plain version-3 state)."""
        if state is None:
            state = cls.tup(cls.i(3), cls.u(endian), cls.NONE, cls.NONE, cls.NONE, cls.i(-1), cls.i(-1), cls.i(0))
        return cls.call(cls.glob("numpy", "dtype"), cls.u(code), cls.FALSE, cls.TRUE) + state + cls.BUILD

    @classmethod
    def array(cls, dtype: bytes, shape: tuple[int, ...], data: bytes, *, fortran: bool = False,
              module: str = "numpy.core.multiarray") -> bytes:  # fmt: skip
        head = cls.call(cls.glob(module, "_reconstruct"), cls.glob("numpy", "ndarray"), cls.tup(cls.i(0)), cls.b(b"b"))
        state = cls.tup(cls.i(1), cls.tup(*(cls.i(d) for d in shape)), dtype, cls.TRUE if fortran else cls.FALSE,
                        cls.b(data))  # fmt: skip
        return head + state + cls.BUILD

    @classmethod
    def object_array(cls, item: bytes) -> bytes:
        """A 0-d object array holding ``item`` (what ``np.save`` pickles into an object ``.npy``)."""
        head = cls.call(cls.glob("numpy.core.multiarray", "_reconstruct"), cls.glob("numpy", "ndarray"),
                        cls.tup(cls.i(0)), cls.b(b"b"))  # fmt: skip
        state = cls.tup(cls.i(1), cls.EMPTY_TUPLE, cls.dtype("O8", endian="|"), cls.FALSE, cls.EMPTY_LIST + item + cls.APPEND)
        return head + state + cls.BUILD

    @classmethod
    def flame(cls, value: bytes, key: str = "v_template") -> bytes:
        """A one-entry dict pickle, as a FLAME file would hold ``key``."""
        return cls.proto(2) + cls.EMPTY_DICT + cls.u(key) + value + cls.SETITEM + cls.STOP


# ------------------------------------------------------------------------------------- seeds
def flame_seed(protocol: int = 2) -> bytes:
    """A small dict in FLAME 2020's pickle format: chumpy ``Ch`` arrays (through the synthetic writer's
    stand-in), a scipy csc joint regressor, uint32 faces, strings."""
    from scipy.sparse import csc_matrix

    from dre.face3d.synth_head import chumpy_standin

    rng = np.random.default_rng(0)
    with chumpy_standin() as Ch:
        d = {
            "f": rng.integers(0, 6, (4, 3)).astype(np.uint32),
            "J_regressor": csc_matrix(np.eye(5, 6)),
            "kintree_table": np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
            "J": Ch(rng.standard_normal((5, 3))),
            "weights": Ch(np.full((6, 5), 0.2)),
            "posedirs": rng.standard_normal((6, 3, 4)),
            "v_template": Ch(np.asfortranarray(rng.standard_normal((6, 3)))),
            "shapedirs": Ch(rng.standard_normal((6, 3, 7)).astype(np.float32)),
            "bs_style": "lbs",
            "flags": [True, 1.5, None, b"x"],
        }
        return pickle.dumps(d, protocol=protocol)


def npy_seed() -> bytes:
    """``np.save`` of a landmark-embedding-like dict (numpy arrays and torch tensors), as DECA's file."""
    import torch

    emb = {
        "static_lmk_faces_idx": np.arange(5, dtype=np.int64),
        "static_lmk_bary_coords": np.full((5, 3), 1 / 3, dtype=np.float32),
        "dynamic_lmk_faces_idx": torch.arange(12, dtype=torch.int64).reshape(3, 4),
        "dynamic_lmk_bary_coords": torch.rand(3, 4, 3, generator=torch.Generator().manual_seed(0)),
        "full_lmk_faces_idx": np.arange(7, dtype=np.int64)[None],
    }
    fh = io.BytesIO()
    np.save(fh, np.array(emb, dtype=object), allow_pickle=True)
    return fh.getvalue()


def tensor_seeds() -> list[bytes]:
    """Legacy LMDB values: ``pickle.dumps`` of CPU tensors (a buffer, a view, a mean shape), protocols 2-4."""
    import torch

    base = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    out = [pickle.dumps(base[1].clone(), protocol=p) for p in (2, 3, 4)]
    out.append(pickle.dumps(base[:, 1], protocol=4))  # a strided view of a bigger storage
    out.append(pickle.dumps(torch.zeros(1, 5).half(), protocol=2))
    return out


def seeds() -> list[Case]:
    return [("flame-p2", "flame", flame_seed(2)), ("flame-p0", "flame", flame_seed(0)), ("npy", "npy", npy_seed())] + [
        (f"tensor-{k}", "tensor", p) for k, p in enumerate(tensor_seeds())
    ]


# ------------------------------------------------------------------------------------- hostile cases
def _forged_object_dtype(flags: int) -> bytes:
    """A 16-byte structured dtype whose first field is an object pointer, with ``flags`` as its flags."""
    A = Asm
    fields = A.EMPTY_DICT + A.u("a") + A.tup(A.dtype("O8", endian="|"), A.i(0)) + A.SETITEM
    fields += A.u("b") + A.tup(A.dtype("f8"), A.i(8)) + A.SETITEM
    state = A.tup(A.i(3), A.u("|"), A.NONE, A.tup(A.u("a"), A.u("b")), fields, A.i(16), A.i(1), A.i(flags))
    return A.dtype("V16", state)


def hostile_cases() -> list[Case]:
    """Hand-written attacks on the allow-listed paths; every one must be refused with a DreError."""
    A = Asm
    f8 = A.dtype("f8")
    plain_state = A.tup(A.i(3), A.u("<"), A.NONE, A.NONE, A.NONE, A.i(-1), A.i(-1), A.i(1))  # refcount flag
    out: list[Case] = [
        # forged dtypes: raw bytes read as object pointers (a segfault in numpy's own unpickling)
        ("object-field-flags-cleared", "flame", A.flame(A.array(_forged_object_dtype(0), (2,), b"\x41" * 32))),
        ("object-field-refcount-only", "flame", A.flame(A.array(_forged_object_dtype(1), (2,), b"\x41" * 32))),
        ("f8-with-refcount-flag", "flame", A.flame(A.array(A.dtype("f8", plain_state), (4,), b"\x41" * 32))),
        ("object-dtype-flags-cleared", "flame", A.flame(A.array(A.dtype("O8", A.tup(
            A.i(3), A.u("|"), A.NONE, A.NONE, A.NONE, A.i(-1), A.i(-1), A.i(0))), (4,), b"\x41" * 32))),
        ("object-dtype-with-bytes", "flame", A.flame(A.array(A.dtype("O8", endian="|"), (4,), b"\x41" * 32))),
        ("object-scalar-from-bytes", "flame", A.flame(A.call(A.glob("numpy.core.multiarray", "scalar"),
                                                             _forged_object_dtype(0), A.b(b"\x41" * 16)))),
        ("scalar-short-bytes", "flame", A.flame(A.call(A.glob("numpy.core.multiarray", "scalar"), f8, A.b(b"\x01")))),
        ("void-dtype", "flame", A.flame(A.array(A.dtype("V8", endian="|"), (1,), b"\0" * 8))),
        ("dtype-elsize-forged", "flame", A.flame(A.array(A.dtype("f8", A.tup(
            A.i(3), A.u("<"), A.NONE, A.NONE, A.NONE, A.i(4096), A.i(-1), A.i(0))), (2,), b"\0" * 16))),
        # shapes and sizes
        ("huge-shape", "flame", A.flame(A.array(f8, (1 << 40, 1 << 40), b"\0" * 8))),
        ("overflowing-shape", "flame", A.flame(A.array(f8, (1 << 62, 1 << 62, 4), b"\0" * 8))),
        ("negative-shape", "flame", A.flame(A.array(f8, (-1, 2), b"\0" * 16))),
        ("short-data", "flame", A.flame(A.array(f8, (100,), b"\0" * 8))),
        ("reconstruct-huge-prealloc", "flame", A.flame(A.call(A.glob("numpy.core.multiarray", "_reconstruct"),
                                                              A.glob("numpy", "ndarray"), A.tup(A.i(1 << 40)), A.b(b"b")))),
        ("reconstruct-other-class", "flame", A.flame(A.call(A.glob("numpy.core.multiarray", "_reconstruct"),
                                                            A.glob("chumpy.ch", "Ch"), A.tup(A.i(0)), A.b(b"b")))),
        ("reconstructor-ndarray", "flame", A.flame(A.call(A.glob("copy_reg", "_reconstructor"), A.glob("numpy", "ndarray"),
                                                          A.glob("numpy", "ndarray"), A.tup(A.i(0))))),
        # codecs and allowed callables with hostile arguments
        ("codec-not-text", "flame", A.flame(A.call(A.glob("_codecs", "encode"), A.u("x"), A.u("zlib_codec")))),
        ("set-of-unhashables", "flame", A.flame(A.call(A.glob("__builtin__", "set"), A.EMPTY_LIST + A.EMPTY_LIST + A.APPEND))),
        ("call-ndarray-class", "flame", A.flame(A.call(A.glob("numpy", "ndarray"), A.tup(A.i(1 << 40))))),
        ("call-object", "flame", A.flame(A.call(A.glob("__builtin__", "object")))),
        # BUILD paths
        ("build-on-dict", "flame", A.proto(2) + A.EMPTY_DICT + A.EMPTY_DICT + A.u("clear") + A.i(1) + A.SETITEM
         + A.BUILD + A.STOP),
        ("build-on-class", "flame", A.flame(A.glob("numpy", "dtype") + A.tup(A.i(3)) + A.BUILD)),
        ("build-chumpy-slotstate", "flame", A.flame(A.glob("chumpy.ch", "Ch") + A.EMPTY_TUPLE + A.NEWOBJ
                                                    + A.tup(A.EMPTY_DICT, A.EMPTY_DICT) + A.BUILD)),
        ("build-twice", "flame", A.flame(A.dtype("f8") + A.tup(A.i(3), A.u("<"), A.NONE, A.NONE, A.NONE, A.i(-1),
                                                               A.i(-1), A.i(63)) + A.BUILD)),
        ("chumpy-expression", "flame", A.flame(A.glob("chumpy.ch", "Ch") + A.EMPTY_TUPLE + A.NEWOBJ + A.EMPTY_DICT
                                               + A.u("a") + A.i(1) + A.SETITEM + A.BUILD)),
        ("sparse-bad-indices", "flame", A.flame(A.glob("scipy.sparse.csc", "csc_matrix") + A.EMPTY_TUPLE + A.NEWOBJ
                                                + A.EMPTY_DICT + A.u("data") + A.array(f8, (1,), b"\0" * 8) + A.SETITEM
                                                + A.u("indices") + A.array(A.dtype("i8"), (1,), struct.pack("<q", 10**9))
                                                + A.SETITEM + A.u("indptr") + A.array(A.dtype("i8"), (2,), struct.pack(
                                                    "<2q", 0, 1)) + A.SETITEM + A.u("_shape") + A.tup(A.i(2), A.i(1))
                                                + A.SETITEM + A.BUILD)),
        # recursion and size amplification
        ("list-contains-itself", "flame", A.flame(A.EMPTY_LIST + A.put(0) + A.get(0) + A.APPEND)),
        ("dict-contains-itself", "flame", A.proto(2) + A.EMPTY_DICT + A.put(0) + A.u("me") + A.get(0) + A.SETITEM + A.STOP),
        ("chumpy-x-is-itself", "flame", A.flame(A.glob("chumpy.ch", "Ch") + A.EMPTY_TUPLE + A.NEWOBJ + A.put(0)
                                                + A.EMPTY_DICT + A.u("x") + A.get(0) + A.SETITEM + A.BUILD)),
        ("exponential-dag", "flame", A.flame(A.u("leaf") + b"".join(A.DUP + A.TUPLE2 for _ in range(80)))),
        ("deep-nesting", "flame", A.flame(A.EMPTY_LIST * 20000 + A.APPEND * 19999)),
        ("encode-amplification", "flame", A.flame(A.u("x" * (1 << 20)) + A.put(0) + A.MARK + b"".join(
            A.call(A.glob("_codecs", "encode"), A.get(0), A.u("latin1")) for _ in range(6000)) + A.TUPLE)),
        # opcodes outside the allow-list
        ("ext-code", "flame", A.proto(2) + b"\x82\x01" + A.STOP),
        ("persistent-id", "flame", A.proto(2) + A.u("x") + b"Q" + A.STOP),
        ("next-buffer", "flame", A.proto(5) + b"\x97" + A.STOP),
        ("global-os-system", "flame", A.flame(A.call(A.glob("os", "system"), A.u("touch pwned")))),
        ("global-eval-protocol0", "flame", b"cbuiltins\neval\n(S'1+1'\ntR."),
    ]
    out += _npy_hostile(out[:9])
    out += _tensor_hostile()
    return out


def _npy_header(descr: str, shape: str) -> bytes:
    header = f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}".encode("latin1")
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def _npy_hostile(flame_cases: list[Case]) -> list[Case]:
    """The forged-dtype attacks inside an object ``.npy`` (as the landmark embedding's dict values), a
    pickle that is not an array, and headers that lie about dtype or size."""
    A = Asm
    out = []
    for name, _kind, payload in flame_cases:
        value = payload[len(A.flame(b"")) - 2 : -2]  # the hostile value inside the one-entry dict
        item = A.EMPTY_DICT + A.u("static_lmk_faces_idx") + value + A.SETITEM
        out.append((f"npy-{name}", "npy", _npy_header("'|O'", "()") + A.proto(3) + A.object_array(item) + A.STOP))
    return out + [
        ("npy-not-an-array", "npy", _npy_header("'|O'", "()") + A.flame(A.NONE)),
        ("npy-structured-object-header", "npy", _npy_header("[('a', '|O'), ('b', '<f8')]", "(1,)") + b"\x41" * 16),
        ("npy-void-header", "npy", _npy_header("'|V16'", "(1,)") + b"\x41" * 16),
        ("npy-huge-shape-header", "npy", _npy_header("'<f8'", "(1099511627776, 1099511627776)") + b"\0" * 8),
        ("npy-short-data", "npy", _npy_header("'<f8'", "(100,)") + b"\0" * 8),
        ("npy-object-array-of-two", "npy", _npy_header("'|O'", "(2,)") + A.proto(3) + A.object_array(A.NONE)[:-1]
         + A.STOP),
    ]


def _storage_blob(type_name: str, numel: int, data: bytes, *, keys: list[str] | None = None) -> bytes:
    """A legacy ``torch.save`` stream of one storage, with everything forgeable."""
    A = Asm
    out = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    out += pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
                        protocol=2)  # fmt: skip
    pid = A.tup(A.u("storage"), A.glob("torch", type_name), A.u("k0"), A.u("cpu"), A.i(numel), A.NONE)
    out += A.proto(2) + pid + b"Q" + A.STOP
    out += pickle.dumps(keys if keys is not None else ["k0"], protocol=2)
    return out + struct.pack("<q", numel) + data


def _tensor(storage_blob: bytes, offset: int, size: tuple, stride: tuple, hooks: bytes | None = None) -> bytes:
    A = Asm
    storage = A.call(A.glob("torch.storage", "_load_from_bytes"), A.b(storage_blob))
    hooks = hooks if hooks is not None else A.call(A.glob("collections", "OrderedDict"))
    args = (storage, A.i(offset), A.tup(*(A.i(s) for s in size)), A.tup(*(A.i(s) for s in stride)), A.FALSE, hooks)
    return A.proto(2) + A.call(A.glob("torch._utils", "_rebuild_tensor_v2"), *args) + A.STOP


def _tensor_hostile() -> list[Case]:
    A = Asm
    good = _storage_blob("FloatStorage", 4, b"\0" * 16)
    odict_items = A.call(A.glob("collections", "OrderedDict")) + A.u("h") + A.glob("os", "system") + A.SETITEM
    return [
        ("tensor-negative-stride", "tensor", _tensor(good, 3, (4,), (-1,))),
        ("tensor-past-storage", "tensor", _tensor(good, 0, (4, 4), (4, 1))),
        ("tensor-huge-offset", "tensor", _tensor(good, 1 << 60, (1,), (1,))),
        ("tensor-size-stride-mismatch", "tensor", _tensor(good, 0, (2, 2), (1,))),
        ("tensor-hooks", "tensor", _tensor(good, 0, (4,), (1,), hooks=odict_items)),
        ("storage-numel-lies", "tensor", _tensor(_storage_blob("FloatStorage", 1 << 40, b"\0" * 16), 0, (4,), (1,))),
        ("storage-short", "tensor", _tensor(_storage_blob("DoubleStorage", 4, b"\0" * 16), 0, (4,), (1,))),
        ("storage-keys-mismatch", "tensor", _tensor(_storage_blob("FloatStorage", 4, b"\0" * 16, keys=["k0", "k1"]),
                                                    0, (4,), (1,))),
        ("storage-untyped", "tensor", _tensor(_storage_blob("UntypedStorage", 16, b"\0" * 16), 0, (4,), (1,))),
        ("storage-not-bytes", "tensor", A.proto(2) + A.call(A.glob("torch._utils", "_rebuild_tensor_v2"), A.EMPTY_LIST,
                                                            A.i(0), A.tup(A.i(1)), A.tup(A.i(1)), A.FALSE, A.NONE) + A.STOP),
        ("rebuild-from-type-any-func", "tensor", A.proto(2) + A.call(
            A.glob("torch._tensor", "_rebuild_from_type_v2"), A.glob("collections", "OrderedDict"),
            A.glob("torch", "Tensor"), A.EMPTY_TUPLE, A.NONE) + A.STOP),
        ("tensor-build-state", "tensor", _tensor(good, 0, (4,), (1,))[:-1] + A.EMPTY_DICT + A.u("__class__")
         + A.glob("torch", "Tensor") + A.SETITEM + A.BUILD + A.STOP),
        ("tensor-is-list", "tensor", pickle.dumps([1, 2, 3], protocol=2)),
    ]


# ------------------------------------------------------------------------------------- mutations
_OPCODES = [op.code.encode("latin1") for op in pickletools.opcodes]
_SNIPPETS = [Asm.BUILD, Asm.REDUCE, Asm.NEWOBJ, Asm.DUP, Asm.POP, Asm.APPEND, Asm.SETITEM, Asm.TUPLE2, Asm.MARK,
             Asm.EMPTY_DICT, Asm.EMPTY_LIST, Asm.NONE, Asm.i(-1), Asm.i(1 << 40), Asm.get(0), Asm.get(3), Asm.put(0),
             Asm.glob("numpy", "dtype"), Asm.glob("numpy.core.multiarray", "_reconstruct"), Asm.glob("chumpy.ch", "Ch"),
             Asm.glob("torch._utils", "_rebuild_tensor_v2"), Asm.glob("collections", "OrderedDict"),
             Asm.glob("copy_reg", "_reconstructor"), Asm.glob("_codecs", "encode"), Asm.u("O8"), Asm.u("V16"),
             Asm.tup(Asm.i(3), Asm.u("|"), Asm.NONE, Asm.NONE, Asm.NONE, Asm.i(-1), Asm.i(-1), Asm.i(63))]  # fmt: skip


@functools.lru_cache(maxsize=64)
def _op_starts(data: bytes) -> list[int]:
    """Byte offsets where opcodes start (as far as the stream parses)."""
    starts = []
    try:
        for _op, _arg, pos in pickletools.genops(data):
            starts.append(pos)
    except Exception:
        pass
    return starts or [0]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """1-4 random edits: flip/insert/delete bytes, insert/delete/duplicate opcodes, splice snippets, truncate."""
    buf = bytearray(data)
    for edit in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        starts = _op_starts(data if edit == 0 else bytes(buf)) if 3 <= op <= 6 else [0]
        at = rng.choice(starts)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = bytes([rng.randrange(256)])
        elif op == 2 and buf:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 3:
            buf[at:at] = rng.choice(_OPCODES)
        elif op == 4:
            buf[at:at] = rng.choice(_SNIPPETS)
        elif op == 5 and len(starts) > 1:
            k = starts.index(at)
            end = starts[k + 1] if k + 1 < len(starts) else len(buf)
            del buf[at:end]
        elif op == 6 and len(starts) > 1:
            k = starts.index(at)
            end = starts[min(k + rng.randint(1, 6), len(starts) - 1)]
            buf[end:end] = buf[at:end]
        elif op == 7:
            del buf[pos:]
    return bytes(buf)


def fuzz_cases(count: int, seed: int = 0) -> Iterator[Case]:
    """``count`` mutated seeds, deterministic in ``seed`` (so a failing case can be replayed by index)."""
    rng = random.Random(seed)
    base = seeds()
    for k in range(count):
        name, kind, payload = base[k % len(base)]
        yield f"fuzz-{seed}-{k}-{name}", kind, mutate(payload, rng)
