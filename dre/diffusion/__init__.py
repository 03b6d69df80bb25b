"""Diffusion process (schedules, P2 loss), respacing and samplers for DiffusionRig."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "DiffusionConfig": "dre.diffusion.config",
    "GaussianDiffusion": "dre.diffusion.schedule",
    "SpacedSchedule": "dre.diffusion.respace",
    "cosine_betas": "dre.diffusion.schedule",
    "ddim_invert": "dre.diffusion.samplers",
    "ddim_sample": "dre.diffusion.samplers",
    "ddpm_sample": "dre.diffusion.samplers",
    "linear_betas": "dre.diffusion.schedule",
    "make_betas": "dre.diffusion.schedule",
    "p2_weights": "dre.diffusion.schedule",
    "space_timesteps": "dre.diffusion.respace",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the submodule behind ``name`` on first use (PEP 562): importing a light submodule of this
    package (its config) must not pull in torch, so ``dre train --help`` stays quick."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
