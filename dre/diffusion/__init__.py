"""Diffusion process (schedules, P2 loss), respacing and samplers for DiffusionRig."""

from __future__ import annotations

from dre.utils.lazy import lazy_exports

_EXPORTS = {
    "DiffusionConfig": "config",
    "GaussianDiffusion": "schedule",
    "ddim_invert": "samplers",
    "ddim_sample": "samplers",
    "ddpm_sample": "samplers",
    "space_timesteps": "respace",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)  # torch-heavy modules load on first use
