"""Stage ``score``: scores of edits: did the edit transfer, did the person stay themselves, is the picture clean.

Each edited picture goes back through the photo pipeline (landmarks → DECA crop → DECA/EMOCA codes) and
is compared with its source and the target run through the same steps (docs/scores.md):
``metrics`` (transfer, leakage, identity from codes), ``quality`` (residual-noise estimate),
``reextract`` (detection + extraction), ``scorer`` (references once, edits many times), ``inputs`` /
``config`` / ``runner`` (``dre score`` on an existing folder), ``summary`` and ``grid`` (what is written and shown).
"""

from __future__ import annotations

from pathlib import Path

from dre.score.config import ScoreConfig as Config
from dre.score.config import ScoreSettings

__all__ = ["Config", "ScoreSettings", "run"]


def run(cfg: Config, **doubles) -> Path:
    """Run the stage on ``cfg`` (see :mod:`dre.score.runner`; ``reextractor=`` reuses loaded networks)."""
    from dre.score.runner import run as run_stage  # lazy: `dre score --help` needs only Config, not torch

    return run_stage(cfg, **doubles)
