"""Stage ``pack``: aligned images + FLAME codes → rendered buffers in a versioned LMDB.

``Config`` holds every ``dre pack`` setting; ``run(cfg)`` packs an album (or converts a legacy LMDB)
and returns what it wrote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dre.pack.config import PackConfig as Config

if TYPE_CHECKING:
    from dre.pack.runner import PackResult, Renderer

__all__ = ["Config", "run"]


def run(cfg: Config, face_model: Renderer | None = None) -> PackResult:
    """Run the stage on ``cfg`` (see :mod:`dre.pack.runner`; ``face_model`` replaces the renderer in tests)."""
    from dre.pack.runner import run as run_stage  # lazy: `dre pack --help` needs only Config, not torch

    return run_stage(cfg, face_model)
