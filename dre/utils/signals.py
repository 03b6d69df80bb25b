"""Signal handlers installed for the length of a block (``dre train``'s stop flag, ``dre pack``'s interrupt)."""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def handling(handler: Callable[[int, Any], None], *names: str) -> Iterator[None]:
    """Run ``handler`` on the signals ``names`` (those this platform has) inside the block, then restore the
    previous handlers. Outside the main thread (a test runner's thread) Python allows none: nothing is installed."""
    previous: dict[int, Any] = {}
    for sig in (getattr(signal, name) for name in names if hasattr(signal, name)):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
