"""Writing and reading ``dre`` LMDBs (layout in :mod:`dre.data.schema`).

Writing is atomic: :func:`build_lmdb` fills a temporary sibling folder and renames it over the
destination only when the block completes and the metadata is written, so a killed ``dre pack`` never
leaves something that looks like an LMDB. The map size starts small and doubles on ``MapFullError``
instead of reserving the original's fixed 1 TiB (which fails on file systems with quotas or no sparse
files).

Reading is lazy and fork-aware: :class:`LmdbAlbum` opens its environment on first access in each
process (LMDB environments must not cross ``fork``; DataLoader workers would otherwise share one) and
keeps one read transaction per process so buffers can be returned as zero-copy views of the map.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import lmdb
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dre.data import schema
from dre.errors import DreError
from dre.face3d.codes import FlameCodes
from dre.safety.ownership import owned_dir

log = logging.getLogger(__name__)

INITIAL_MAP_SIZE = 64 << 20


class LmdbBuilder:
    """Handle given by :func:`build_lmdb`: put records in batches, then write the metadata once."""

    def __init__(self, folder: Path, initial_map_size: int) -> None:
        self.folder = folder
        self.map_size = int(initial_map_size)
        self.env = lmdb.open(
            str(folder), map_size=self.map_size, subdir=True, readahead=False, meminit=False,
            sync=False, metasync=False, max_dbs=0,
        )  # fmt: skip
        self.meta_written = False
        self.grow_count = 0

    def put(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Write records in one transaction, growing the map and retrying when it is full."""
        records = list(records)
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in records:
                        txn.put(key, value)
                return
            except lmdb.MapFullError:
                need = sum(len(k) + len(v) for k, v in records)
                self.map_size = max(2 * self.map_size, self.map_size + 2 * need)
                self.grow_count += 1
                log.debug("LMDB map full; growing map_size to %d bytes", self.map_size)
                self.env.set_mapsize(self.map_size)

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.put([(schema.META_KEY, schema.encode_meta(meta))])
        self.meta_written = True

    def close(self) -> None:
        self.env.sync(True)
        self.env.close()
        # Readers open with lock=False; the writer's lock file is noise in a finished store.
        with contextlib.suppress(FileNotFoundError):
            (self.folder / "lock.mdb").unlink()


@contextlib.contextmanager
def build_lmdb(dest: str | os.PathLike[str], *, initial_map_size: int = INITIAL_MAP_SIZE, command: str = "dre pack",
               inputs: Iterable = ()) -> Iterator[LmdbBuilder]:  # fmt: skip
    """Build an LMDB folder at ``dest`` atomically, replacing only an LMDB dre wrote (``dre.safety.ownership``:
    the folder gets our marker; ``inputs`` may not be, contain or lie inside ``dest``).

    Inside the block, write samples with ``builder.put`` and extra files into ``builder.folder``; call
    ``builder.write_meta`` last. On any exception (including KeyboardInterrupt) the temporary folder is
    deleted and ``dest`` is untouched; leaving the block without metadata is an error too.
    """
    with owned_dir(dest, command, inputs=inputs) as tmp:
        builder = LmdbBuilder(Path(tmp), initial_map_size)
        try:
            yield builder
        except BaseException:
            builder.env.close()
            raise
        if not builder.meta_written:
            builder.env.close()
            raise RuntimeError(f"LMDB build for {dest} finished without metadata; nothing was written")
        builder.close()


@dataclass
class _EnvHandle:
    pid: int
    env: Any
    txn: Any
    users: int = 0


_ENVS: dict[tuple[int, int], _EnvHandle] = {}
_ENVS_LOCK = threading.Lock()


def _open_readonly(path: Path) -> Any:
    try:
        return lmdb.open(
            str(path), readonly=True, lock=False, readahead=False, meminit=False, subdir=True, max_readers=512,
        )  # fmt: skip
    except lmdb.Error as exc:
        raise DreError(f"cannot open LMDB {path}: {exc}") from None


def _shared_txn(path: Path, file_id: tuple[int, int]) -> Any:
    """This process's long-lived read transaction on ``path`` (opened on first use, shared by all albums).

    LMDB (and py-lmdb) refuse a second open of one environment in a process, so albums over the same
    file share one. After ``fork`` the child finds the parent's handle: it closes that inherited copy
    (harmless with ``lock=False``: no lock file, no reader table, the parent's mapping is its own) and
    opens its own.
    """
    pid = os.getpid()
    with _ENVS_LOCK:
        h = _ENVS.get(file_id)
        if h is None or h.pid != pid:
            if h is not None:
                with contextlib.suppress(Exception):
                    h.env.close()
            env = _open_readonly(path)
            h = _ENVS[file_id] = _EnvHandle(pid, env, env.begin(buffers=True))
        return h.txn


class LmdbAlbum:
    """Read-only view of a ``dre`` LMDB; safe to hand to DataLoader workers (fork or spawn).

    Nothing LMDB-related is stored on the instance: access goes through a per-process environment
    cache (:func:`_shared_txn`), so pickling for spawned workers carries only the path and metadata,
    and forked workers reopen the store on first access.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        data = self.path / "data.mdb"
        if not data.is_file():
            raise DreError(f"{self.path} is not an LMDB folder (no data.mdb); build it with `dre pack`")
        st = data.stat()
        self._file_id = (st.st_dev, st.st_ino)
        self._registered: int | None = None  # pid in which this album counts as a user of the env
        self.meta: dict[str, Any] = schema.decode_meta(self._txn().get(schema.META_KEY), str(self.path))
        self.count = int(self.meta["count"])
        self.image_size = int(self.meta["image_size"])
        self.has_codes = self.meta.get("codes") is not None
        ms = self.meta.get("mean_shape")
        self.mean_shape: np.ndarray | None = None if ms is None else np.asarray(ms, dtype=np.float32)

    def _txn(self) -> Any:
        txn = _shared_txn(self.path, self._file_id)
        pid = os.getpid()
        if self._registered != pid:
            with _ENVS_LOCK:
                _ENVS[self._file_id].users += 1
            self._registered = pid
        return txn

    def close(self) -> None:
        """Stop using the store in this process; the environment closes when its last album closes.

        Zero-copy views returned earlier become invalid once the environment closes: copy what you keep.
        """
        if self._registered != os.getpid():
            return
        self._registered = None
        with _ENVS_LOCK:
            h = _ENVS.get(self._file_id)
            if h is None or h.pid != os.getpid():
                return
            h.users -= 1
            if h.users <= 0:
                h.txn.abort()
                h.env.close()
                del _ENVS[self._file_id]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_registered"] = None
        return state

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"LmdbAlbum({str(self.path)!r}, count={self.count}, image_size={self.image_size})"

    # -- records -----------------------------------------------------------------------------------
    def _raw(self, i: int, field: str) -> memoryview:
        if not 0 <= i < self.count:
            raise IndexError(f"sample {i} out of range for {self.path} ({self.count} samples)")
        value = self._txn().get(schema.sample_key(i, field))
        if value is None:
            raise DreError(f"{self.path}: sample {i} has no {field!r} record (truncated or corrupt LMDB)")
        return value

    def image_png(self, i: int) -> bytes:
        return bytes(self._raw(i, "image"))

    def image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        try:
            with Image.open(io.BytesIO(self._raw(i, "image"))) as im:
                arr = np.array(im.convert("RGB"))  # writable: torch.from_numpy must not alias a read-only array
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DreError(f"{self.path}: image {i} is not a readable PNG ({exc}; corrupt LMDB)") from None
        if arr.shape[:2] != (self.image_size, self.image_size):
            raise DreError(f"{self.path}: image {i} is {arr.shape[1]}x{arr.shape[0]}, meta says {self.image_size}")
        return arr

    def buffers_box(self, i: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """((y0, y1, x0, x1), (9, y1-y0, x1-x0) float16): a zero-copy read-only view of the memory map.

        Outside the box every channel is exactly 0. The view stays valid while this album is open in
        this process (copy it before :meth:`close`).
        """
        where = f"{self.path} sample {i}"
        box, crop = schema.decode_buffer_box(self._raw(i, "buffers"), where)
        s = self.image_size
        if box[1] > s or box[3] > s:
            raise DreError(f"{where}: buffer box {box} lies outside the {s}x{s} image (corrupt LMDB)")
        return box, crop

    def buffers(self, i: int) -> np.ndarray:
        """(9, H, W) float16 in the order rendered, normal, albedo.

        Zero-copy when the stored box is the whole image; otherwise one zero-padded copy.
        """
        (y0, y1, x0, x1), crop = self.buffers_box(i)
        s = self.image_size
        if (y0, y1, x0, x1) == (0, s, 0, s):
            return crop
        full = np.zeros((len(schema.BUFFER_CHANNELS), s, s), dtype=schema.BUFFER_DTYPE)
        full[:, y0:y1, x0:x1] = crop
        return full

    def cond_into(self, i: int, out: "np.ndarray | torch.Tensor") -> "np.ndarray | torch.Tensor":
        """Write sample ``i``'s buffers as float32 into ``out`` (9,H,W): the one copy a loader must make.

        Done with torch, whose vectorised half→float copy is ~8x faster than numpy's here.
        """
        (y0, y1, x0, x1), crop = self.buffers_box(i)
        dst = torch.from_numpy(out) if isinstance(out, np.ndarray) else out
        dst.zero_()
        with warnings.catch_warnings():
            # the source is LMDB's read-only map; it is only read, never written through
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            src = torch.from_numpy(crop)
        dst[:, y0:y1, x0:x1].copy_(src)
        return out

    def cond(self, i: int) -> "torch.Tensor":
        """(9,H,W) float32 tensor of sample ``i``'s buffers (a fresh tensor)."""
        s = self.image_size
        return self.cond_into(i, torch.empty((len(schema.BUFFER_CHANNELS), s, s), dtype=torch.float32))

    def source(self, i: int) -> str:
        return bytes(self._raw(i, "source")).decode("utf-8")

    def codes_array(self, i: int, *, as_rendered: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(236 float32 codes, 3×3 tform). ``as_rendered`` swaps in the album mean shape if it was used."""
        if not self.has_codes:
            raise DreError(
                f"{self.path} holds no FLAME codes (it was imported from an original DiffusionRig LMDB, "
                "which never stored them); re-pack the album from images with `dre pack --codes`"
            )
        flat, tform = schema.decode_codes(self._raw(i, "codes"), f"{self.path} sample {i}")
        if as_rendered and self.mean_shape is not None:
            flat = flat.copy()
            flat[: self.mean_shape.size] = self.mean_shape
        return flat, tform

    def codes(self, i: int, *, as_rendered: bool = True) -> tuple["FlameCodes", "torch.Tensor"]:
        """Sample ``i``'s codes (batch of 1) and tform (1,3,3), as used to render its buffers.

        The stored codes are the extracted ones; with a mean-shape album ``as_rendered=True`` (default)
        returns the mean shape that the buffers were rendered with.
        """
        flat, tform = self.codes_array(i, as_rendered=as_rendered)
        return FlameCodes.from_flat(torch.from_numpy(flat)[None]), torch.from_numpy(tform)[None]
