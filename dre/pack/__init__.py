"""Stage ``pack``: aligned images + FLAME codes → rendered buffers in a versioned LMDB.

``Config`` holds every ``dre pack`` setting; ``run(cfg, face_model=None)`` (:func:`dre.pack.runner.run`;
``face_model`` replaces the renderer in tests) packs an album (or converts a legacy LMDB) and returns what
it wrote.
"""

from __future__ import annotations

from dre.pack.config import PackConfig as Config
from dre.utils.lazy import lazy_exports

__all__ = ["Config", "run"]
__getattr__ = lazy_exports(__name__, {"run": "runner"})  # lazy: `dre pack --help` needs only Config, not torch
