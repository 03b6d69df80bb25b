"""Noise schedules, the forward process and the P2-weighted ε loss.

Tables are computed in float64 and cast to float32 only when indexed on a device, as the original
does (docs/reference.md). Written from that description.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from dre.diffusion.config import DiffusionConfig
from dre.diffusion.respace import SpacedSchedule
from dre.errors import DreError


def linear_betas(steps: int) -> Tensor:
    """β_t = linspace(1e-4, 0.02, T)·(1000/T) in float64 (the scale keeps ᾱ_T similar for any T)."""
    scale = 1000.0 / steps
    # numpy's linspace (exact end points, start + i·step) is the arithmetic the published tables used
    return torch.from_numpy(np.linspace(scale * 1e-4, scale * 0.02, steps, dtype=np.float64))


def cosine_betas(steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), 0.999) with ᾱ(u) = cos²((u+s)/(1+s)·π/2) (Nichol & Dhariwal)."""

    def abar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - abar((i + 1) / steps) / abar(i / steps), max_beta) for i in range(steps)]
    return torch.tensor(betas, dtype=torch.float64)


BETAS: dict[str, Callable[[int], Tensor]] = {"linear": linear_betas, "cosine": cosine_betas}
"""The β table of each of :data:`~dre.diffusion.config.SCHEDULES` (a ``DiffusionConfig`` names only these)."""


def p2_weights(alphas_cumprod: Tensor, gamma: float, k: float) -> Tensor:
    """P2 weights λ_t = 1/(k + SNR_t)^γ with SNR_t = ᾱ_t/(1−ᾱ_t) (Choi et al. 2022), float64."""
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    return 1.0 / (k + snr) ** gamma


def _bcast(v: Tensor, ndim: int) -> Tensor:
    return v.reshape(v.shape[0], *([1] * (ndim - 1)))


class GaussianDiffusion:
    """The forward process and training objective over the full T-step schedule.

    Samplers (``dre.diffusion.samplers``) work on respaced sub-schedules derived from it.
    """

    def __init__(self, cfg: DiffusionConfig | None = None) -> None:
        self.cfg = cfg or DiffusionConfig()
        self.num_timesteps = self.cfg.steps
        self.betas = BETAS[self.cfg.schedule](self.cfg.steps)
        if not bool(((self.betas > 0) & (self.betas <= 1)).all()):
            raise DreError("noise schedule produced betas outside (0, 1]")
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        self.p2 = p2_weights(self.alphas_cumprod, self.cfg.p2_gamma, self.cfg.p2_k)
        # float64 tables on the CPU; float32 copies per device are made once (no per-step transfers)
        self._tables = {"sqrt_ac": self.alphas_cumprod.sqrt(), "sqrt_1m_ac": (1.0 - self.alphas_cumprod).sqrt(),
                        "p2": self.p2}
        self._device_tables: dict[tuple[str, str], Tensor] = {}
        self._spaced: dict[str, SpacedSchedule] = {}

    def _table(self, name: str, device: torch.device) -> Tensor:
        key = (name, str(device))
        if key not in self._device_tables:
            self._device_tables[key] = self._tables[name].to(device=device, dtype=torch.float32)
        return self._device_tables[key]

    # ------------------------------------------------------------------ forward process
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε for integer timesteps ``t`` (B,) on x0's device."""
        a = self._table("sqrt_ac", x0.device)[t]
        b = self._table("sqrt_1m_ac", x0.device)[t]
        return _bcast(a, x0.ndim) * x0 + _bcast(b, x0.ndim) * noise

    def training_losses(
        self, model_fn: Callable[[Tensor, Tensor], Tensor], x0: Tensor, t: Tensor, noise: Tensor
    ) -> dict[str, Tensor]:
        """Per-sample (B,) losses: ``mse`` = mean over pixels of (ε − ε̂)², ``loss`` = λ_t·mse (P2).

        ``model_fn(x_t, t)`` predicts ε; it runs under whatever autocast the caller set, and the squared
        error is taken in fp32.
        """
        x_t = self.q_sample(x0, t, noise)
        eps = model_fn(x_t, t)
        if eps.shape != noise.shape:
            raise ValueError(f"model output shape {tuple(eps.shape)} != noise shape {tuple(noise.shape)}")
        mse = (noise.float() - eps.float()).square().flatten(1).mean(dim=1)
        return {"loss": self._table("p2", t.device)[t] * mse, "mse": mse}  # P2 weights λ_t

    # ------------------------------------------------------------------ respacing
    def spaced(self, respacing: str | list[int] | tuple[int, ...] = "") -> SpacedSchedule:
        """The sub-schedule for a respacing spec (cached; see ``dre.diffusion.respace``)."""
        key = respacing if isinstance(respacing, str) else ",".join(map(str, respacing))
        if key not in self._spaced:
            self._spaced[key] = SpacedSchedule(self.alphas_cumprod, respacing)
        return self._spaced[key]
