"""``AlignConfig``: every ``dre align`` setting, defined once (flags and workflow keys derive from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dre.errors import DreError
from dre.utils.cliconfig import run_arg, setting

POLICIES = ("largest", "all", "skip")
BACKENDS = ("fan", "mediapipe", "sidecar")


@dataclass
class AlignConfig:
    """Everything ``dre align`` takes (flags → this → :func:`dre.align.run`).

    The settings are the keys of the workflow config's ``align:`` section; ``already_aligned`` is an
    album's sheet column, so the rule passes it.
    """

    input: Path = run_arg(help="album folder, or a single image file")
    output: Path = run_arg(help="output folder (created; replaced atomically)")
    size: int = setting(256, help="output resolution")
    backend: str = setting(
        "fan",
        choices=BACKENDS,
        help="landmarks: fan = face-alignment 2D-FAN (weights in $TORCH_HOME/hub/checkpoints), "
        "mediapipe = offline face mesh mapped to 68 points, sidecar = <image>.txt/.npy 68x2 files",
    )
    multi_face: str = setting(
        "largest",
        choices=POLICIES,
        help="policy for photos with several faces (all writes <stem>_1.png, ...)",
    )
    min_face: float = setting(64.0, help="skip faces whose eye-mouth quad is smaller (px)")
    already_aligned: bool = run_arg(
        False, help="images are already FFHQ-aligned (e.g. FFHQ): only detect landmarks and index them, no warping"
    )
    device: str = setting("auto", help="auto, cpu, cuda or cuda:N (fan back-end)")
    batch_size: int = setting(8, help="images per detection batch where supported")
    transform_size: int | None = None  # None: 4 × size (see dre.align.ffhq.SUPERSAMPLE)
    progress: bool | None = field(default=None)  # None: a bar only on a terminal

    def __post_init__(self) -> None:
        self.input, self.output = Path(self.input), Path(self.output)
        if self.size < 8:
            raise DreError(f"--size {self.size}: must be at least 8")
        if self.multi_face not in POLICIES:
            raise DreError(f"--multi-face {self.multi_face!r} is not one of {', '.join(POLICIES)}")
        if self.min_face < 0:
            raise DreError(f"--min-face {self.min_face}: must be ≥ 0")
        if self.batch_size < 1:
            raise DreError(f"--batch-size {self.batch_size}: must be ≥ 1")
