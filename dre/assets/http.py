"""HTTP(S) download of one file into a partial file that later runs resume, with a progress line.

Why our own small downloader (standard library only): the asset files are tens of megabytes from
research servers behind institutional proxies, and a cut connection must not restart from zero. So:

- the standard proxy variables (``http_proxy``, ``https_proxy``, ``no_proxy``) are honoured through
  urllib's ``ProxyHandler``, read when the download starts;
- bytes go to ``.<name>.dre-download`` beside the destination, described by a sidecar
  ``.<name>.dre-download.json`` (URL, total size, the server's ETag/Last-Modified). The sidecar is
  written first, so a partial file without it was not made by us and is never touched. A later attempt
  (a retry, or the next run) asks for the rest with ``Range`` + ``If-Range``: a server that changed the
  file (or ignores ranges) answers with the whole file, which then replaces the partial one;
- every socket operation has a timeout; cuts and timeouts are retried from where they stopped;
- errors are :class:`DreError` naming the URL and what to do (offline: download it elsewhere).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dre.errors import DreError
from dre.safety.atomic import atomic_write_text

CHUNK = 1 << 16
MAX_BYTES = 1 << 30  # the largest file fetched (2D-FAN-4) is about 100 MB
PART_SUFFIX = ".dre-download"
USER_AGENT = "dre-assets-fetch (DiffusionRig-Emo)"


def part_path(dest: Path) -> Path:
    """Where the partial download of ``dest`` lives (same folder, so publishing it is one rename)."""
    return dest.with_name(f".{dest.name}{PART_SUFFIX}")


def sidecar_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def discard_part(part: Path) -> None:
    """Remove a partial download and its sidecar (both ours)."""
    for p in (part, sidecar_path(part)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


class Progress:
    """One progress line on stderr: rewritten in place on a terminal, start and end lines otherwise."""

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = 0.0
        self.t0 = time.monotonic()

    def update(self, done: int, total: int | None, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and (not self.tty or now - self.last < 0.2):
            return
        self.last = now
        mib = done / 2**20
        rate = mib / max(now - self.t0, 1e-6)
        size = f"/ {total / 2**20:.1f} MiB {100 * done / total:3.0f}%" if total else "MiB"
        text = f"{self.label}: {mib:7.1f} {size} {rate:6.1f} MiB/s"
        end = "\n" if final or not self.tty else ""
        self.stream.write(("\r" if self.tty else "") + text + end)
        self.stream.flush()


@dataclass
class _State:
    """The sidecar: which URL the partial file belongs to and how to resume it safely."""

    url: str
    total: int | None = None
    validator: str | None = None  # ETag, else Last-Modified: the If-Range value

    def save(self, part: Path) -> None:
        atomic_write_text(sidecar_path(part), json.dumps(self.__dict__, sort_keys=True) + "\n")


def _load_state(part: Path, url: str) -> _State:
    """The sidecar of ``part`` for ``url``; a partial file of another URL (or none) starts over."""
    side = sidecar_path(part)
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
        ok = isinstance(data, dict) and data.get("url") == url
    except (OSError, ValueError):
        data, ok = None, False
    if os.path.lexists(part) and data is None:
        raise DreError(
            f"{part} exists but was not written by dre (no {side.name} beside it); it is left untouched. "
            "Remove it yourself, then run the command again"
        )
    if not ok:
        discard_part(part)
        return _State(url)
    return _State(url=url, total=data.get("total"), validator=data.get("validator"))


class _Retry(Exception):
    """A transient failure (cut connection, timeout, server error): try again from where it stopped."""


class _TooLarge(Exception):
    """The server sent more than any asset file can be (a wrong URL, or a stream that never ends)."""


def _attempt(url: str, part: Path, state: _State, timeout: float, progress: Progress, max_bytes: int) -> None:
    have = part.stat().st_size if part.exists() else 0
    if state.total is not None and state.total > max_bytes:
        raise _TooLarge(state.total)
    if state.total is not None and have == state.total and have > 0:
        return  # an earlier run finished the bytes but not the publishing
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if state.validator:
            headers["If-Range"] = state.validator
    req = urllib.request.Request(url, headers=headers)
    try:  # with the proxies of the environment (``*_proxy``; ``no_proxy`` is checked per request)
        resp = urllib.request.build_opener(urllib.request.ProxyHandler()).open(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            discard_part(part)  # our partial file does not fit the remote one: start over
            state.total = state.validator = None
            raise _Retry(f"HTTP 416 for a resume at byte {have}") from None
        if exc.code >= 500 or exc.code == 429:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise DreError(
            f"{url}: HTTP {exc.code} {exc.reason}. The pinned address may have moved: download the file in a "
            "browser and give it to `dre assets add`, or use --mirror"
        ) from None
    except (TimeoutError, socket.timeout) as exc:
        raise _Retry(f"no answer within {timeout:g} s ({exc})") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise _Retry(f"no answer within {timeout:g} s") from None
        if isinstance(exc.reason, (ConnectionRefusedError, socket.gaierror)) or not isinstance(exc.reason, OSError):
            raise DreError(  # nobody there (or no such host): retrying will not help
                f"cannot reach {url} ({exc.reason}). If this machine is offline or behind a proxy: set https_proxy / "
                f"http_proxy, or download {url} on a machine with network access and run "
                f"`dre assets add <downloaded file> --assets <assets folder>`"
            ) from None
        raise _Retry(f"connection failed ({exc.reason})") from None  # reset, closed early: transient
    except (http.client.HTTPException, ConnectionError) as exc:
        raise _Retry(f"bad answer ({type(exc).__name__}: {exc})") from None
    with resp:
        length = resp.headers.get("Content-Length")
        if resp.status == 206:
            start = _content_range_start(resp.headers.get("Content-Range"))
            if start != have:
                discard_part(part)
                state.total = state.validator = None
                raise _Retry(f"server resumed at byte {start}, not {have}")
            mode = "ab"
            total = have + int(length) if length else state.total
        else:
            mode, have = "wb", 0  # a full answer: the server ignored the range or the file changed
            total = int(length) if length else None
        if total is not None and total > max_bytes:
            raise _TooLarge(total)
        state.total = total
        state.validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
        state.save(part)
        done = have
        try:
            with open(part, mode) as fh:
                while True:
                    block = resp.read1(CHUNK)  # what has arrived: a stall keeps the bytes before it
                    if not block:
                        break
                    fh.write(block)
                    done += len(block)
                    if done > max_bytes:
                        raise _TooLarge(done)
                    progress.update(done, total)
        except (TimeoutError, socket.timeout) as exc:
            raise _Retry(f"stalled for {timeout:g} s after {done} bytes ({exc})") from None
        except (http.client.IncompleteRead, ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _Retry(f"connection cut after {done} bytes ({type(exc).__name__})") from None
    if total is not None and done != total:
        raise _Retry(f"connection cut after {done} of {total} bytes")
    progress.update(done, total, final=True)


def _content_range_start(value: str | None) -> int:
    """The first byte of ``Content-Range: bytes a-b/n`` (-1 when absent or unreadable)."""
    try:
        return int(str(value).split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1


def download(url: str, dest: Path, *, timeout: float = 30.0, retries: int = 3, label: str | None = None,
             stream: IO[str] | None = None, backoff: float = 0.5, max_bytes: int = MAX_BYTES) -> Path:  # fmt: skip
    """Download ``url`` into the partial file of ``dest`` (resuming it); returns that partial file.

    The caller validates it and publishes it (or discards it): this function never writes ``dest``.
    """
    part = part_path(dest)
    part.parent.mkdir(parents=True, exist_ok=True)
    state = _load_state(part, url)
    if not os.path.lexists(sidecar_path(part)):
        state.save(part)  # sidecar before any byte, so a partial file is always recognisably ours
    progress = Progress(label or dest.name, stream)
    why = ""
    for attempt in range(retries + 1):
        try:
            _attempt(url, part, state, timeout, progress, max_bytes)
            return part
        except _Retry as exc:
            why = str(exc)
            if attempt < retries:
                (stream or sys.stderr).write(f"{progress.label}: {why}; retrying ({attempt + 1}/{retries})\n")
                time.sleep(backoff * (attempt + 1))
        except DreError:
            _drop_if_empty(part)
            raise
        except _TooLarge as exc:
            discard_part(part)
            raise DreError(
                f"{url}: the server sends {exc.args[0]} bytes or more, above the {max_bytes}-byte cap for an asset "
                "file; nothing was kept. Check the URL (or --mirror)"
            ) from None
    _drop_if_empty(part)
    kept = part.stat().st_size if part.exists() else 0
    resume = (f"The {kept} bytes received are kept in {part}; run the same command again to resume"
              if kept else "Nothing was received; run the same command again later")  # fmt: skip
    raise DreError(
        f"downloading {url} failed after {retries + 1} attempt(s): {why}. {resume}, or download the file "
        "yourself and run `dre assets add <downloaded file> --assets <assets folder>`"
    )


def _drop_if_empty(part: Path) -> None:
    """Nothing received: remove the sidecar too, so a failed first attempt leaves no trace."""
    if not part.exists() or part.stat().st_size == 0:
        discard_part(part)


def describe_proxy(url: str) -> str:
    """The proxy urllib will use for ``url`` (for --dry-run), or 'direct'."""
    scheme = url.split(":", 1)[0]
    proxies: dict[str, Any] = urllib.request.getproxies()
    host = urllib.request.urlparse(url).hostname or ""
    if scheme in proxies and not urllib.request.proxy_bypass(host):
        return f"via proxy {proxies[scheme]}"
    return "direct"
