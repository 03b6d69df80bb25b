"""Stage ``extract``: aligned album images → one FLAME-codes row per image (``codes.parquet``).

``Config`` holds every ``dre extract`` setting; ``run(cfg)`` writes the table and returns the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dre.extract.config import ExtractConfig as Config

if TYPE_CHECKING:
    from dre.extract.runner import ExtractReport
    from dre.face3d.extractor import Extractor

__all__ = ["Config", "run"]


def run(cfg: Config, extractor: Extractor | None = None) -> ExtractReport:
    """Run the stage on ``cfg`` (see :mod:`dre.extract.runner`; ``extractor`` replaces the encoders in tests)."""
    from dre.extract.runner import run as run_stage  # lazy: `dre extract --help` needs only Config, not torch

    return run_stage(cfg, extractor)
