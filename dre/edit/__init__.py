"""Stage ``edit``: transfer a target face's expression, head pose, lighting or global latent onto album photos.

``Config`` holds every ``dre edit`` setting and ``run(cfg)`` writes the edit folder. Inside: ``modes``
parses modes and swaps codes, ``rigspec`` parses rig terms (``pose:yaw=20``, ranges for sweeps), ``rigmath``
holds their rotation and SH maths and ``rigcodes`` applies them to codes, ``inputs`` reads sources,
targets (a photo or a folder of frames) and the mean shape, ``engine`` renders and samples every source ×
mode batched, ``writer``/``outputs`` write the folder, ``animate``/``flicker`` animate sequences and
measure their flicker, ``runner`` ties them together.
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
