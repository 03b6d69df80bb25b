"""Run pickle cases through the restricted unpickler in subprocesses, surviving crashes and hangs.

The parent (:func:`run_cases`) writes the cases to a file and starts a worker (this file run as a
script). The worker loads case after case, printing ``S <i>`` before and ``R <i> <outcome>`` after
each, so when it dies of a signal or stops answering, the parent knows which case did it, records
``crash``/``hang`` for it and starts a new worker at the next case. Outcomes:

- ``ok``: the loader returned a value of the permitted kinds (plain scalars, numeric/bool numpy arrays
  and scalars, CPU torch tensors, lists/tuples/dicts of these), every array byte readable;
- ``dre <message>``: the loader raised :class:`~dre.errors.DreError`;
- ``bad <what>``: anything else (another exception, a value of another kind);
- ``crash <signal>`` / ``hang``: decided by the parent.

Workers run with an address-space limit (a runaway allocation is a MemoryError, not the machine's
OOM killer) in an empty working folder that must still be empty afterwards (nothing written).
"""

from __future__ import annotations

import os
import resource
import select
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

Case = tuple[str, str, bytes]
MEMORY_LIMIT = 6 << 30
WHERE = {"flame": "case.pkl", "npy": "case.npy", "tensor": "case.lmdb key 'albedo_000000'"}


def write_cases(path: Path, cases: list[Case]) -> None:
    with open(path, "wb") as fh:
        for name, kind, payload in cases:
            for part in (name.encode(), kind.encode(), payload):
                fh.write(struct.pack("<Q", len(part)) + part)


def read_cases(path: Path) -> list[Case]:
    data = Path(path).read_bytes()
    out, pos, parts = [], 0, []
    while pos < len(data):
        (n,) = struct.unpack_from("<Q", data, pos)
        parts.append(data[pos + 8 : pos + 8 + n])
        pos += 8 + n
        if len(parts) == 3:
            out.append((parts[0].decode(), parts[1].decode(), parts[2]))
            parts = []
    return out


def check_value(obj: Any) -> str | None:
    """None when ``obj`` is made only of permitted kinds (shared parts visited once); else the problem."""
    import torch

    stack, seen = [obj], set()
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        t = type(o)
        if o is None or t in (bool, int, float, str, bytes):
            continue
        if t in (list, tuple):
            stack.extend(o)
        elif t is dict:
            for k, v in o.items():
                if not (k is None or type(k) in (bool, int, float, str, bytes, tuple)):
                    return f"dict key of type {type(k).__name__}"
                stack.append(v)
        elif t is np.ndarray or isinstance(o, np.generic):
            dt = o.dtype
            if dt.kind not in "biufc" or dt.fields is not None or dt.hasobject or dt.subdtype is not None:
                return f"numpy value of dtype {dt!r}"
            raw = np.asarray(o).tobytes()  # touches every byte
            if dt.kind == "b" and raw and max(raw) > 1:
                return "bool array holding bytes other than 0/1"
        elif t is torch.Tensor:
            if o.device.type != "cpu" or o.requires_grad or o.is_quantized or o.is_sparse:
                return f"tensor on {o.device} (requires_grad={o.requires_grad})"
            o.contiguous().view(torch.uint8).sum()  # touches every byte
        else:
            return f"value of type {t.__module__}.{t.__qualname__}"
    return None


def _loaders() -> dict[str, Callable[[bytes], Any]]:
    from dre.safety.unpickle import FAMILIES_FLAME, load_npy_bytes, load_tensor_pickle, loads

    return {
        "flame": lambda d: loads(d, WHERE["flame"], FAMILIES_FLAME),
        "npy": lambda d: load_npy_bytes(d, WHERE["npy"]),
        "tensor": lambda d: load_tensor_pickle(d, WHERE["tensor"]),
    }


def worker_main(case_file: str, start: int, loaders: dict[str, Callable[[bytes], Any]] | None = None) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    from dre.errors import DreError

    loaders = loaders or _loaders()
    import torch  # noqa: F401 - imported before the first case, so no case's timeout pays for it

    cases = read_cases(Path(case_file))
    out = sys.stdout
    for i in range(start, len(cases)):
        _name, kind, payload = cases[i]
        out.write(f"S {i}\n")
        out.flush()
        try:
            problem = check_value(loaders[kind](payload))
            status = "ok" if problem is None else f"bad {problem}"
        except DreError as exc:
            status = f"dre {exc}"
        except BaseException as exc:  # noqa: BLE001 - every other outcome is a failure to report
            status = f"bad {type(exc).__name__}: {exc}"
        out.write(f"R {i} {' '.join(status.split())[:600]}\n")
        out.flush()


def run_cases(cases: list[Case], *, worker: list[str] | None = None, timeout: float = 30.0,
              startup: float = 300.0) -> list[str]:  # fmt: skip
    """The outcome of every case (see the module docstring), restarting the worker after a crash/hang.

    Raises AssertionError if a worker wrote anything into its (empty) working folder.
    """
    repo = Path(__file__).resolve().parents[1]
    worker = worker or [sys.executable, str(Path(__file__).resolve())]
    results: list[str | None] = [None] * len(cases)
    with tempfile.TemporaryDirectory(prefix="dre-fuzz-") as tmp:
        case_file, cwd = Path(tmp) / "cases.bin", Path(tmp) / "cwd"
        cwd.mkdir()
        write_cases(case_file, cases)
        env = {**os.environ, "PYTHONPATH": str(repo), "TMPDIR": str(cwd), "HOME": str(cwd)}
        i = 0
        while i < len(cases):
            with open(Path(tmp) / "stderr.txt", "ab") as err:
                proc = subprocess.Popen([*worker, str(case_file), str(i)], stdout=subprocess.PIPE, stderr=err,
                                        cwd=cwd, env=env)  # fmt: skip
            i = _follow(proc, results, i, timeout, startup)
        written = sorted(p.name for p in cwd.iterdir())
        assert not written, f"the loaders wrote files: {written}"
    return [r or "missing" for r in results]


def _follow(proc: subprocess.Popen, results: list[str | None], start: int, timeout: float, startup: float) -> int:
    """Read one worker's reports; returns the index to restart from (len(results) when done)."""
    assert proc.stdout is not None
    fd, buf, current = proc.stdout.fileno(), b"", None
    deadline = time.monotonic() + startup
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:  # silence past the deadline: the current case hangs (or the worker never started)
            proc.kill()
            proc.wait()
            if current is None:
                raise AssertionError(f"fuzz worker did not start within {startup} s")
            results[current] = "hang"
            return current + 1
        chunk = os.read(fd, 65536)
        if not chunk:
            rc = proc.wait()
            if current is None:
                if rc != 0 or any(r is None for r in results[start:]):
                    raise AssertionError(f"fuzz worker exited with {rc} between cases")
                return len(results)
            results[current] = f"crash signal {-rc}" if rc < 0 else f"crash exit {rc}"
            return current + 1
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            tag, _, rest = line.decode("utf-8", "replace").partition(" ")
            if tag == "S":
                current = int(rest)
                deadline = time.monotonic() + timeout
            elif tag == "R":
                k, _, status = rest.partition(" ")
                results[int(k)] = status
                current = None


if __name__ == "__main__":
    worker_main(sys.argv[1], int(sys.argv[2]))
