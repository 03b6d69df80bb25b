"""Zip and tar archives read as untrusted input: list members, refuse hostile ones, copy out with caps.

Why strict: the archives come from download pages and mail attachments; extraction must never write
outside the assets folder or fill the disk. The whole archive is refused (before anything is written)
when any member has an absolute path, a ``..`` component, a drive letter or backslash, is a symbolic or
hard link, a device or FIFO, or declares a size above :attr:`Limits.member_bytes` (or all members
together above :attr:`Limits.total_bytes`), or a zip member expands more than :attr:`Limits.ratio`
times its compressed size. While a member is copied, its bytes are counted: a member whose content is
longer or shorter than declared, or whose CRC-32 does not match, is refused (a size that lies).
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Iterator

from dre.errors import DreError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Caps on what an archive may expand to (defaults fit the real archives with a wide margin:
    the largest needed member, the FLAME texture space, is about 1.3 GB; real members compress < 20:1)."""

    member_bytes: int = 8 << 30
    total_bytes: int = 32 << 30
    ratio: float = 200.0
    ratio_floor: int = 1 << 20  # members smaller than this are not ratio-checked (tiny text files)


@dataclass(frozen=True)
class Member:
    """One regular file of an archive."""

    name: str  # normalised POSIX path inside the archive
    size: int  # declared uncompressed size
    compressed: int | None  # zip only


def safe_name(raw: str, archive: Path) -> str:
    """A member name as a relative POSIX path, or DreError for absolute / traversing / odd names."""
    if "\\" in raw or "\x00" in raw:
        raise DreError(f"{archive}: member {raw!r} has a backslash or NUL in its name; refusing the archive")
    p = PurePosixPath(raw)
    if p.is_absolute() or (p.parts and p.parts[0].endswith(":")):
        raise DreError(f"{archive}: member {raw!r} has an absolute path; refusing the archive")
    if ".." in p.parts:
        raise DreError(f"{archive}: member {raw!r} points outside the archive ('..'); refusing the archive")
    return p.as_posix()


def is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


class Archive:
    """An opened zip or tar with its safe member list (constructing it runs every check that can be
    made before extraction); use as a context manager."""

    def __init__(self, path: Path, limits: Limits = Limits()) -> None:
        self.path = path
        self.limits = limits
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        try:
            if zipfile.is_zipfile(path):
                self._zip = zipfile.ZipFile(path)
                self.members = self._zip_members()
            elif is_tar(path):
                self._tar = tarfile.open(path, "r:*")
                self.members = self._tar_members()
            else:
                raise DreError(f"{path}: neither a zip nor a tar archive")
            self._check_total()
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            self.close()
            raise DreError(f"{path}: a damaged archive ({exc}); download it again") from None
        except BaseException:
            self.close()
            raise
        self.by_name = {m.name: m for m in self.members}

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for h in (self._zip, self._tar):
            if h is not None:
                h.close()

    def _check_total(self) -> None:
        total, lim = sum(m.size for m in self.members), self.limits
        packed = self.path.stat().st_size
        if self._tar is not None and total > lim.ratio_floor and total > lim.ratio * max(packed, 1):
            raise DreError(  # a compressed tar: its members have no compressed sizes, the whole stream has one
                f"{self.path}: expands {total / max(packed, 1):.0f}-fold ({packed} → {total} bytes), above the "
                f"{lim.ratio:g}:1 cap; refusing the archive (a compression bomb?)"
            )
        if total > lim.total_bytes:
            raise DreError(
                f"{self.path}: its members declare {total} bytes in all, above the {lim.total_bytes}-byte cap; "
                "refusing the archive (a compression bomb, or not one of the asset archives)"
            )

    def _check_size(self, name: str, size: int, compressed: int | None) -> None:
        lim = self.limits
        if size > lim.member_bytes:
            raise DreError(
                f"{self.path}: member {name!r} declares {size} bytes, above the {lim.member_bytes}-byte cap; "
                "refusing the archive"
            )
        if compressed is not None and size > lim.ratio_floor and size > lim.ratio * max(compressed, 1):
            raise DreError(
                f"{self.path}: member {name!r} expands {size / max(compressed, 1):.0f}-fold ({compressed} → {size} "
                f"bytes), above the {lim.ratio:g}:1 cap; refusing the archive (a compression bomb?)"
            )

    def _zip_members(self) -> list[Member]:
        assert self._zip is not None
        out = []
        seen: set[str] = set()
        for info in self._zip.infolist():
            name = safe_name(info.filename, self.path)
            if name in seen:
                raise DreError(f"{self.path}: member {name!r} appears twice; refusing the archive")
            seen.add(name)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise DreError(f"{self.path}: member {info.filename!r} is a symbolic link; refusing the archive")
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # no type bits: a file
                raise DreError(f"{self.path}: member {info.filename!r} is not a regular file; refusing the archive")
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise DreError(f"{self.path}: member {info.filename!r} is encrypted; unpack it yourself first")
            self._check_size(name, info.file_size, info.compress_size)
            out.append(Member(name, info.file_size, info.compress_size))
        return out

    def _tar_members(self) -> list[Member]:
        assert self._tar is not None
        out = []
        for info in self._tar.getmembers():
            name = safe_name(info.name, self.path)
            if info.issym() or info.islnk():
                raise DreError(f"{self.path}: member {info.name!r} is a {'symbolic' if info.issym() else 'hard'} link; "
                               "refusing the archive")  # fmt: skip
            if info.isdir():
                continue
            if not info.isreg():
                raise DreError(f"{self.path}: member {info.name!r} is not a regular file; refusing the archive")
            self._check_size(name, info.size, None)
            out.append(Member(name, info.size, None))
        return out

    def _open(self, m: Member) -> IO[bytes]:
        if self._zip is not None:
            return self._zip.open(m.name)
        assert self._tar is not None
        fh = self._tar.extractfile(m.name)
        if fh is None:  # pragma: no cover - regular members always have a file object
            raise DreError(f"{self.path}: member {m.name!r} cannot be read")
        return fh

    def head(self, m: Member, n: int = 4096) -> bytes:
        """The first ``n`` bytes of a member (to recognise its content without extracting it)."""
        try:
            with self._open(m) as fh:
                return fh.read(min(n, m.size))
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise DreError(
                f"{self.path}: member {m.name!r} cannot be read ({exc}); download the archive again"
            ) from None

    def chunks(self, m: Member) -> Iterator[bytes]:
        """The member's bytes, refusing content longer or shorter than declared or with a wrong CRC."""
        crc, count = 0, 0
        expect_crc = self._zip.getinfo(m.name).CRC if self._zip is not None else None
        try:
            with self._open(m) as fh:
                while True:
                    block = fh.read(CHUNK)
                    if not block:
                        break
                    count += len(block)
                    if count > m.size:
                        break
                    if expect_crc is not None:
                        crc = zlib.crc32(block, crc)
                    yield block
                extra = fh.read(1) if count == m.size else b""
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise DreError(
                f"{self.path}: member {m.name!r} is damaged or its declared size lies ({exc}); refusing the archive "
                "(download it again if it came from the official site)"
            ) from None
        if count != m.size or extra or (expect_crc is not None and crc != expect_crc):
            raise DreError(
                f"{self.path}: member {m.name!r} declares {m.size} bytes but its content does not match "
                f"(read {count}{'+' if extra else ''} bytes, CRC {'ok' if crc == expect_crc else 'wrong'}); "
                "refusing the archive (its declared size lies, or the download is damaged)"
            )

    def extract(self, m: Member, dest: Path) -> None:
        """Copy member ``m`` to the new file ``dest`` (whose folder the caller made inside its staging area)."""
        with open(dest, "xb") as out:
            for block in self.chunks(m):
                out.write(block)
