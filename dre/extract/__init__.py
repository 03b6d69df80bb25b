"""Stage ``extract``: aligned album images → one FLAME-codes row per image (``codes.parquet``).

``Config`` holds every ``dre extract`` setting; ``run(cfg)`` writes the table and returns the report.
"""

from __future__ import annotations

from dre.extract.config import ExtractConfig as Config
from dre.extract.runner import run

__all__ = ["Config", "run"]
