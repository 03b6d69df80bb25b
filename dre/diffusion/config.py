"""``DiffusionConfig``: the diffusion process settings, free of torch.

Kept apart from the schedules so that ``dre train --help`` (whose flags include these settings) builds
its parser without importing torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dre.errors import DreError
from dre.utils.cliconfig import setting
from dre.utils.records import from_dict_strict

SCHEDULES = ("linear", "cosine")


@dataclass
class DiffusionConfig:
    """Diffusion process settings (defaults = the published training: 1000 linear steps, P2 γ=k=1).

    ``p2_gamma = 0`` turns the P2 weighting off (λ_t = 1), i.e. the original's ``--p2_weight False``.
    """

    steps: int = setting(1000, flag="diffusion-steps", help="diffusion timesteps T of training")
    schedule: str = setting("linear", flag="noise-schedule", choices=SCHEDULES, help="beta schedule")
    p2_gamma: float = setting(1.0, help="P2 weighting exponent (0 disables)")
    p2_k: float = setting(1.0, help="P2 weighting offset k in 1 / (k + SNR)^gamma")

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise DreError(f"diffusion steps must be >= 1, got {self.steps}")
        if self.schedule not in SCHEDULES:
            raise DreError(f"noise schedule must be one of {SCHEDULES}, got {self.schedule!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusionConfig:
        return from_dict_strict(cls, d, "diffusion_config")
