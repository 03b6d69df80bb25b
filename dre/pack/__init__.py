"""Stage ``pack``: aligned images + FLAME codes → rendered buffers in a versioned LMDB.

``Config`` holds every ``dre pack`` setting; ``run(cfg)`` packs an album (or converts a legacy LMDB)
and returns what it wrote.
"""

from __future__ import annotations

from dre.pack.config import PackConfig as Config
from dre.pack.runner import run

__all__ = ["Config", "run"]
