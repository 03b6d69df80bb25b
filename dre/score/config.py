"""``dre score`` settings, defined once (flags and workflow keys derive from them).

:class:`ScoreSettings` is how edits are judged; it is nested in both ``dre edit``'s config (which scores
its own pictures) and ``dre score``'s, and its keys are the workflow config's ``score:`` section.
:class:`ScoreConfig` adds what one ``dre score`` run works on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from dre.errors import DreError
from dre.extract.config import EXTRACTORS, emoca_model_arg
from dre.score.quality import NOISE_THRESHOLD
from dre.utils.cliconfig import nested, run_arg, setting

LANDMARK_BACKENDS = ("mediapipe", "fan")
"""Detectors that can run on a generated picture (``sidecar`` cannot: nobody annotated it)."""

LEAK_THRESHOLD = 0.5
"""Default ``leakage`` above which an edit is marked ``leaked``: an untouched block moved at least half
as far as the target's value is from the source's."""


@dataclass
class ScoreSettings:
    """How edits are judged (recorded with the scores): the workflow config's ``score:`` keys."""

    landmarks: str = setting(
        "mediapipe", choices=LANDMARK_BACKENDS,
        help="landmark detector run on every picture (fan needs face-alignment and its weights under $TORCH_HOME)",
    )
    noise_threshold: float = setting(
        NOISE_THRESHOLD, help="grey levels of noise added over the source above which a picture is flagged noisy"
    )
    leak_threshold: float = setting(
        LEAK_THRESHOLD, help="leakage (untouched codes moved, in units of the source-target distance) marked leaked"
    )

    def validate(self) -> None:
        if self.landmarks not in LANDMARK_BACKENDS:
            raise DreError(f"--landmarks must be one of {', '.join(LANDMARK_BACKENDS)} (got {self.landmarks!r})")
        if not (self.noise_threshold > 0 and math.isfinite(self.noise_threshold)):
            raise DreError(f"--noise-threshold must be a positive number of grey levels (got {self.noise_threshold})")
        if not (self.leak_threshold > 0 and math.isfinite(self.leak_threshold)):
            raise DreError(f"--leak-threshold must be positive (got {self.leak_threshold})")


@dataclass
class ScoreConfig:
    """Every ``dre score`` flag. All but the nested settings are run arguments: the score rule passes the
    edit's batch size and device, so ``dre score`` has no workflow section of its own besides ``score:``."""

    edits: Path = run_arg(help="edit folder (with edit.parquet) or a folder of <source_stem>_<mode>.png")
    assets: Path = run_arg(help="assets folder (the extractors)")
    out: Path = run_arg(help="output folder (results/scores/<edit>); never the edit folder itself")
    source: Path | None = run_arg(None, help="aligned source folder or image (default: the sources in edit.parquet)")
    target: Path | None = run_arg(None, help="aligned target folder or image (default: the target in edit.parquet)")
    source_extractor: str | None = run_arg(None, choices=EXTRACTORS, help="default: from edit.parquet")
    target_extractor: str | None = run_arg(None, choices=EXTRACTORS, help="default: from edit.parquet")
    emoca_model: str = emoca_model_arg()
    batch_size: int = run_arg(16, help="pictures per encoder batch")
    device: str = run_arg("auto", help="auto, cpu, cuda or cuda:N")
    scoring: ScoreSettings = nested(ScoreSettings, title="scores")

    def validate(self) -> None:
        self.scoring.validate()
        if self.batch_size < 1:
            raise DreError(f"--batch-size must be at least 1 (got {self.batch_size})")
        edits, out = Path(self.edits).resolve(), Path(self.out).resolve()
        if out == edits or edits in out.parents or out in edits.parents:
            raise DreError(f"--out {self.out} must be a folder of its own, not inside or around --edits {self.edits} "
                           "(the edit folder belongs to `dre edit`)")
        for flag, kind in (("--source-extractor", self.source_extractor), ("--target-extractor", self.target_extractor)):
            if kind is not None and kind not in EXTRACTORS:
                raise DreError(f"{flag} must be deca or emoca (got {kind!r})")
