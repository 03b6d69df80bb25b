"""Stage ``align``: landmark back-ends, the FFHQ recipe and the album runner.

``Config`` holds every ``dre align`` setting; ``run(cfg)`` aligns (or indexes) an album into a folder of
crops plus ``align.parquet`` and returns the report.
"""

from __future__ import annotations

from dre.align.config import AlignConfig as Config
from dre.align.runner import run

__all__ = ["Config", "run"]
