"""Batched samplers over a respaced schedule: DDIM (η, x̂₀ clipping), ancestral DDPM, DDIM inversion.

The loops never synchronise with the host: every per-step coefficient is a Python float computed
up front in float64, the visited timesteps are copied to the device once, and the model is only
ever given device tensors. Step arithmetic follows the original (docs/reference.md).

``model_fn(x_t, t) -> ε̂`` receives ``t`` as the *original* timesteps (B,) (the respaced index is
mapped back, like the original's wrapped model), so one trained model works with any respacing.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

from dre.diffusion.respace import SpacedSchedule
from dre.diffusion.schedule import GaussianDiffusion

ModelFn = Callable[[Tensor, Tensor], Tensor]
Respacing = str | Sequence[int]


def _schedule(diffusion: GaussianDiffusion, respacing: Respacing,
              x: Tensor) -> tuple[SpacedSchedule, Tensor, list[float]]:
    """The sub-schedule, its visited timesteps as an (N, B) tensor on x's device made once (row i is step i's
    ``t`` for the batch), and its ᾱ as Python floats."""
    sched = diffusion.spaced(respacing)
    ts = sched.timesteps_on(x.device)
    return sched, ts[:, None].expand(ts.shape[0], x.shape[0]).contiguous(), sched.alphas_cumprod.tolist()


def _noise_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _pred_x0(x: Tensor, eps: Tensor, abar: float, clip: bool) -> tuple[Tensor, Tensor]:
    """x̂₀ = x/√ᾱ − √(1/ᾱ−1)·ε̂, optionally clipped to [−1, 1] with ε re-derived from the clipped x̂₀."""
    ca, cb = math.sqrt(1.0 / abar), math.sqrt(1.0 / abar - 1.0)
    x0 = torch.add(x * ca, eps, alpha=-cb)
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
        if cb > 0:
            eps = (x * ca - x0) / cb
    return x0, eps


def ddim_sample(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    noise: Tensor,
    respacing: Respacing = "ddim20",
    eta: float = 0.0,
    clip_denoised: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DDIM from ``noise`` = x at the last visited step down to x̂₀ (B,C,H,W), fp32.

    Per step i (ᾱ = ᾱ_{t_i}, ᾱ' = ᾱ_{t_{i−1}}, ᾱ' = 1 after the last): σ = η·√((1−ᾱ')/(1−ᾱ))·√(1−ᾱ/ᾱ'),
    x ← √ᾱ'·x̂₀ + √(1−ᾱ'−σ²)·ε + σ·z. η = 0 is deterministic (the published inference setting).
    """
    sched, ts, ac = _schedule(diffusion, respacing, noise)
    ac_prev = sched.alphas_cumprod_prev.tolist()
    x = noise.float()
    for i in reversed(range(sched.num_steps)):
        a, ap = ac[i], ac_prev[i]
        eps = model_fn(x, ts[i]).float()
        x0, eps = _pred_x0(x, eps, a, clip_denoised)
        sigma = eta * math.sqrt((1.0 - ap) / (1.0 - a)) * math.sqrt(1.0 - a / ap)
        c_eps = math.sqrt(max(1.0 - ap - sigma * sigma, 0.0))
        x = torch.add(x0 * math.sqrt(ap), eps, alpha=c_eps)
        if i > 0 and sigma > 0:
            x = torch.add(x, _noise_like(x, generator), alpha=sigma)
    return x


def ddpm_sample(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    noise: Tensor,
    respacing: Respacing = "",
    clip_denoised: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Ancestral sampling with the posterior mean of x̂₀ and the original's FIXED_LARGE variance.

    x ← coef1·x̂₀ + coef2·x + √var·z (no noise after the last step), var_i = β'_i except
    var_0 = posterior variance at index 1.
    """
    sched, ts, ac = _schedule(diffusion, respacing, noise)
    c1 = sched.posterior_mean_coef1.tolist()
    c2 = sched.posterior_mean_coef2.tolist()
    std = sched.fixed_large_variance.sqrt().tolist()
    x = noise.float()
    for i in reversed(range(sched.num_steps)):
        eps = model_fn(x, ts[i]).float()
        x0, _ = _pred_x0(x, eps, ac[i], clip_denoised)
        x = torch.add(x0 * c1[i], x, alpha=c2[i])
        if i > 0:
            x = torch.add(x, _noise_like(x, generator), alpha=std[i])
    return x


def ddim_invert(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    x0: Tensor,
    respacing: Respacing = "ddim20",
    clip_denoised: bool = False,
) -> Tensor:
    """Deterministic DDIM inversion: the x at the last visited step whose η=0 DDIM sample ≈ ``x0``.

    The clean image is the state at ᾱ = 1. Step i moves from level ᾱ_{t_{i−1}} (1 for i = 0) up to
    ᾱ_{t_i}: x̂₀ and ε̂ come from the model at the current state, called with the *target* timestep
    t_i (the step of :func:`ddim_sample` that undoes this one calls the model with t_i too, so the
    only approximation left is evaluating it one level lower; this halves the round-trip error of
    the Diff-AE variant that labels the current level), then x ← √ᾱ_{t_i}·x̂₀ + √(1−ᾱ_{t_i})·ε̂.
    It makes as many model calls as the sampler and returns exactly what :func:`ddim_sample` takes as
    ``noise``. Clipping is off by default: it would bias the inversion of images whose x̂₀ estimates
    leave [−1, 1].
    """
    sched, ts, ac = _schedule(diffusion, respacing, x0)
    x = x0.float()
    a_cur = 1.0
    for i in range(sched.num_steps):
        eps = model_fn(x, ts[i]).float()
        if a_cur < 1.0:
            xs, eps = _pred_x0(x, eps, a_cur, clip_denoised)
        else:
            xs = x
        x = torch.add(xs * math.sqrt(ac[i]), eps, alpha=math.sqrt(1.0 - ac[i]))
        a_cur = ac[i]
    return x
