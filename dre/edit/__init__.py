"""Edits: transfer a target face's expression, head pose, lighting or global latent onto album photos.

``modes`` parses modes and swaps codes, ``inputs`` reads sources, targets and the mean shape,
``engine`` renders and samples every source × mode batched, ``writer``/``outputs`` write the folder,
``run`` ties them together behind :func:`run_edit` (what ``dre edit`` calls).
"""

from __future__ import annotations

from dre.edit.modes import COMPONENTS, Mode, parse_mode, parse_modes, swap_codes, with_shape
from dre.edit.run import EditConfig, run_edit

__all__ = ["COMPONENTS", "EditConfig", "Mode", "parse_mode", "parse_modes", "run_edit", "swap_codes", "with_shape"]
