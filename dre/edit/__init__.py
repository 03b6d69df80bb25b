"""Stage ``edit``: transfer a target face's expression, head pose, lighting or global latent onto album photos.

``Config`` holds every ``dre edit`` setting and ``run(cfg)`` writes the edit folder. Inside: ``modes``
parses modes and swaps codes, ``inputs`` reads sources, targets and the mean shape, ``engine`` renders
and samples every source × mode batched, ``writer``/``outputs`` write the folder, ``runner`` ties them
together.
"""

from __future__ import annotations

from pathlib import Path

from dre.edit.config import EditConfig as Config
from dre.edit.modes import COMPONENTS, Mode, parse_mode, parse_modes, swap_codes, with_shape

__all__ = ["COMPONENTS", "Config", "Mode", "parse_mode", "parse_modes", "run", "swap_codes", "with_shape"]


def run(cfg: Config) -> Path:
    """Run the stage on ``cfg`` (see :mod:`dre.edit.runner`)."""
    from dre.edit.runner import run as run_stage  # lazy: `dre edit --help` needs only Config, not torch

    return run_stage(cfg)
