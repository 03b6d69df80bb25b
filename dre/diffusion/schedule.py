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

from dre.diffusion.config import SCHEDULES, DiffusionConfig
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


def make_betas(schedule: str, steps: int) -> Tensor:
    if schedule == "linear":
        return linear_betas(steps)
    if schedule == "cosine":
        return cosine_betas(steps)
    raise DreError(f"unknown noise schedule {schedule!r}; choose one of {SCHEDULES}")


def p2_weights(alphas_cumprod: Tensor, gamma: float, k: float) -> Tensor:
    """P2 weights λ_t = 1/(k + SNR_t)^γ with SNR_t = ᾱ_t/(1−ᾱ_t) (Choi et al. 2022), float64."""
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    return 1.0 / (k + snr) ** gamma


class _DeviceTables:
    """float64 tables on the CPU, with float32 copies per device made once (no per-step transfers)."""

    def __init__(self, **tables: Tensor) -> None:
        self._cpu = tables
        self._cache: dict[tuple[str, str], Tensor] = {}

    def get(self, name: str, device: torch.device) -> Tensor:
        key = (name, str(device))
        if key not in self._cache:
            self._cache[key] = self._cpu[name].to(device=device, dtype=torch.float32)
        return self._cache[key]


def _bcast(v: Tensor, ndim: int) -> Tensor:
    return v.reshape(v.shape[0], *([1] * (ndim - 1)))


class GaussianDiffusion:
    """The forward process and training objective over the full T-step schedule.

    Samplers (``dre.diffusion.samplers``) work on respaced sub-schedules derived from it.
    """

    def __init__(self, cfg: DiffusionConfig | None = None) -> None:
        self.cfg = cfg or DiffusionConfig()
        self.num_timesteps = self.cfg.steps
        self.betas = make_betas(self.cfg.schedule, self.cfg.steps)
        if not bool(((self.betas > 0) & (self.betas <= 1)).all()):
            raise DreError("noise schedule produced betas outside (0, 1]")
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        self.p2 = p2_weights(self.alphas_cumprod, self.cfg.p2_gamma, self.cfg.p2_k)
        self._tables = _DeviceTables(
            sqrt_ac=self.alphas_cumprod.sqrt(),
            sqrt_1m_ac=(1.0 - self.alphas_cumprod).sqrt(),
            p2=self.p2,
        )
        self._spaced: dict[str, SpacedSchedule] = {}

    # ------------------------------------------------------------------ forward process
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε for integer timesteps ``t`` (B,) on x0's device."""
        a = self._tables.get("sqrt_ac", x0.device)[t]
        b = self._tables.get("sqrt_1m_ac", x0.device)[t]
        return _bcast(a, x0.ndim) * x0 + _bcast(b, x0.ndim) * noise

    def loss_weights(self, t: Tensor) -> Tensor:
        """P2 weights λ_t (float32, t's device)."""
        return self._tables.get("p2", t.device)[t]

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
        return {"loss": self.loss_weights(t) * mse, "mse": mse}

    # ------------------------------------------------------------------ respacing
    def spaced(self, respacing: str | list[int] | tuple[int, ...] = "") -> SpacedSchedule:
        """The sub-schedule for a respacing spec (cached; see ``dre.diffusion.respace``)."""
        key = respacing if isinstance(respacing, str) else ",".join(map(str, respacing))
        if key not in self._spaced:
            self._spaced[key] = SpacedSchedule(self.alphas_cumprod, respacing)
        return self._spaced[key]
