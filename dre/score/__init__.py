"""Stage ``score``: scores of edits: did the edit transfer, did the person stay themselves, is the picture clean.

Each edited picture goes back through the photo pipeline (landmarks → DECA crop → DECA/EMOCA codes) and
is compared with its source and the target run through the same steps (docs/scores.md):
``metrics`` (transfer, leakage, identity from codes), ``quality`` (residual-noise estimate),
``reextract`` (detection + extraction), ``scorer`` (references once, edits many times), ``inputs`` /
``config`` / ``run`` (``dre score`` on an existing folder), ``summary`` and ``grid`` (what is written and shown).
"""

from __future__ import annotations

from dre.score.config import ScoreConfig as Config
from dre.score.config import ScoreSettings
from dre.score.run import run
from dre.score.scorer import SCORE_COLUMNS

__all__ = ["Config", "SCORE_COLUMNS", "ScoreSettings", "run"]
