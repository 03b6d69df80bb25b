"""Diffusion process (schedules, P2 loss), respacing and samplers for DiffusionRig."""

from __future__ import annotations

from dre.diffusion.respace import SpacedSchedule, space_timesteps
from dre.diffusion.samplers import ddim_invert, ddim_sample, ddpm_sample
from dre.diffusion.schedule import (
    DiffusionConfig,
    GaussianDiffusion,
    cosine_betas,
    linear_betas,
    make_betas,
    p2_weights,
)

__all__ = [
    "DiffusionConfig",
    "GaussianDiffusion",
    "SpacedSchedule",
    "cosine_betas",
    "ddim_invert",
    "ddim_sample",
    "ddpm_sample",
    "linear_betas",
    "make_betas",
    "p2_weights",
    "space_timesteps",
]
