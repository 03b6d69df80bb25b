"""Loud marking of anything produced from synthetic assets.

`dre assets synth` writes FLAME-structured files with random content and a ``SYNTHETIC`` marker file.
Every output derived from them (codes, LMDBs, models, edits) carries a ``synthetic`` flag and every
command that reads them prints :data:`BANNER`, so nobody mistakes a demo output for a real result.
"""

from __future__ import annotations

import sys
from pathlib import Path

MARKER_NAME = "SYNTHETIC"
BANNER = (
    "*** SYNTHETIC ASSETS: this output comes from a synthetic FLAME-structured model and randomly "
    "initialised networks made by `dre assets synth`; it is NOT a real face reconstruction. ***"
)


def is_synthetic_assets(assets_dir: str | Path) -> bool:
    """True when ``assets_dir`` was written by `dre assets synth` (it holds the marker file)."""
    return (Path(assets_dir) / MARKER_NAME).is_file()


def warn_synthetic(what: str = "") -> None:
    """Print the banner to stderr (once per call site; cheap enough not to deduplicate)."""
    suffix = f" [{what}]" if what else ""
    print(BANNER + suffix, file=sys.stderr, flush=True)
