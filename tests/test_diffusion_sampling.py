"""DDIM / DDPM samplers and DDIM inversion with oracle models whose answers are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from dre.diffusion import GaussianDiffusion, ddim_invert, ddim_sample, ddpm_sample

D = GaussianDiffusion()
AC = D.alphas_cumprod  # checked against closed forms in test_diffusion_schedule.py

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _a(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return AC.to(x.device)[t].view(-1, *[1] * (x.ndim - 1))  # float64: the oracle itself adds no error


def point_oracle(x0: torch.Tensor):
    """Exact ε for data concentrated on a known x0: ε̂(x_t) = (x_t − √ᾱ·x0)/√(1−ᾱ)."""
    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = _a(t, x)
        return ((x.double() - a.sqrt() * x0.double()) / (1 - a).sqrt()).to(x.dtype)
    return fn


def gaussian_oracle(mu: float, s: float):
    """Exact ε = E[ε | x_t] for data x0 ~ N(μ, s²) i.i.d.: √(1−ᾱ)(x − √ᾱ μ)/(ᾱ s² + 1 − ᾱ).

    Its probability-flow ODE keeps z = (x_t − √ᾱ μ)/√(ᾱ s² + 1 − ᾱ) constant, which gives the exact
    answers DDIM must converge to.
    """
    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = _a(t, x)
        return ((1 - a).sqrt() * (x.double() - a.sqrt() * mu) / (a * s * s + 1 - a)).to(x.dtype)
    return fn


@pytest.mark.parametrize("respacing", ["1", "ddim5", "ddim20", "ddim50", "7,3", ""])
def test_ddim_with_oracle_recovers_x0_in_any_number_of_steps(respacing: str) -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 3, 8, 8, generator=g) * 1.8 - 0.9
    noise = torch.randn(3, 3, 8, 8, generator=g)
    out = ddim_sample(D, point_oracle(x0), noise, respacing)
    torch.testing.assert_close(out, x0, atol=2e-5, rtol=0)
    out = ddim_sample(D, point_oracle(x0), noise, respacing, eta=0.7, generator=g)
    torch.testing.assert_close(out, x0, atol=2e-5, rtol=0)


def test_ddim_trajectory_and_timesteps_follow_the_forward_process() -> None:
    """Started on q(x_T|x0), every state the model sees is √ᾱ_t·x0 + √(1−ᾱ_t)·n for the same n."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    n = torch.randn(2, 3, 4, 4, generator=g)
    a_T = AC[950].item()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    oracle = point_oracle(x0)

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append((x.clone(), t.clone()))
        return oracle(x, t)

    ddim_sample(D, fn, math.sqrt(a_T) * x0 + math.sqrt(1 - a_T) * n, "ddim20")
    assert [s[1].tolist() for s in seen] == [[t, t] for t in range(950, -1, -50)]
    for x, t in seen:
        a = AC[t[0]].item()
        torch.testing.assert_close(x, math.sqrt(a) * x0 + math.sqrt(1 - a) * n, atol=1e-5, rtol=0)


def test_ddim_clipping_of_x0() -> None:
    x0 = torch.full((1, 3, 2, 2), 1.5)
    noise = torch.randn(1, 3, 2, 2)
    clipped = ddim_sample(D, point_oracle(x0), noise, "ddim10")
    assert torch.allclose(clipped, torch.ones_like(clipped))
    free = ddim_sample(D, point_oracle(x0), noise, "ddim10", clip_denoised=False)
    torch.testing.assert_close(free, x0, atol=1e-5, rtol=0)


def test_ddim_converges_to_the_data_distribution() -> None:
    mu, s = 0.3, 0.5
    noise = torch.randn(4, 20000, generator=torch.Generator().manual_seed(0))
    stds = []
    for r in ("ddim20", "ddim100", ""):
        out = ddim_sample(D, gaussian_oracle(mu, s), noise, r, clip_denoised=False)
        assert out.mean().item() == pytest.approx(mu, abs=5e-3)
        stds.append(out.std().item())
    assert abs(stds[2] - s) < abs(stds[1] - s) < abs(stds[0] - s)  # first-order convergence
    assert stds[2] == pytest.approx(s, abs=5e-3)


def test_ddpm_distribution_and_reproducibility() -> None:
    mu, s = 0.3, 0.5
    noise = torch.randn(4, 20000, generator=torch.Generator().manual_seed(0))
    out = ddpm_sample(D, gaussian_oracle(mu, s), noise, "", clip_denoised=False,
                      generator=torch.Generator().manual_seed(1))
    assert out.mean().item() == pytest.approx(mu, abs=5e-3)
    assert out.std().item() == pytest.approx(s, abs=5e-3)
    small = noise[:, :64]
    runs = [ddpm_sample(D, gaussian_oracle(mu, s), small, "ddim10", generator=torch.Generator().manual_seed(k))
            for k in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])
    # with a point oracle the last step lands exactly on x0 whatever the noise drawn before
    x0 = torch.rand(2, 3, 4, 4) * 2 - 1
    out = ddpm_sample(D, point_oracle(x0), torch.randn(2, 3, 4, 4), "ddim10", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_ddim_eta_noise_is_reproducible() -> None:
    x = torch.randn(2, 16)
    fn = gaussian_oracle(0.0, 0.5)
    a = ddim_sample(D, fn, x, "ddim10", eta=1.0, generator=torch.Generator().manual_seed(0))
    b = ddim_sample(D, fn, x, "ddim10", eta=1.0, generator=torch.Generator().manual_seed(0))
    c = ddim_sample(D, fn, x, "ddim10", eta=0.0)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_ddim_inversion_round_trip_and_ode_solution() -> None:
    mu, s = 0.3, 0.5
    fn = gaussian_oracle(mu, s)
    x0 = mu + s * torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    errs, ode_errs = [], []
    for r in ("ddim20", "ddim100", "ddim250"):
        xT = ddim_invert(D, fn, x0, r)
        a_T = D.spaced(r).alphas_cumprod[-1].item()
        exact = math.sqrt(a_T) * mu + math.sqrt(a_T * s * s + 1 - a_T) * (x0 - mu) / s
        ode_errs.append((xT - exact).abs().max().item())
        rec = ddim_sample(D, fn, xT, r, clip_denoised=False)
        errs.append((rec - x0).abs().max().item())
    assert errs[2] < errs[1] < errs[0] and ode_errs[2] < ode_errs[1] < ode_errs[0]
    assert errs[2] < 0.03 and ode_errs[2] < 0.06
    assert errs[0] / errs[2] > 8  # ≈ first order in the step size (250/20 = 12.5)


def test_samplers_are_batched_per_sample() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 3, 4, 4, generator=g)
    fn = gaussian_oracle(0.1, 0.4)
    whole = ddim_sample(D, fn, x, "ddim10")
    parts = torch.cat([ddim_sample(D, fn, x[i:i + 1], "ddim10") for i in range(3)])
    torch.testing.assert_close(whole, parts)
    inv = ddim_invert(D, fn, x.clamp(-1, 1), "ddim10")
    torch.testing.assert_close(inv, torch.cat([ddim_invert(D, fn, x[i:i + 1].clamp(-1, 1), "ddim10") for i in range(3)]))


def test_sampling_loops_never_read_device_values() -> None:
    """On the meta device any host sync (.item(), bool(tensor), .tolist() of a device tensor) raises."""
    meta = torch.empty(2, 3, 8, 8, device="meta")
    zeros = lambda x, t: torch.zeros_like(x)  # noqa: E731
    for out in (ddim_sample(D, zeros, meta, "ddim20"), ddpm_sample(D, zeros, meta, "ddim20"),
                ddim_invert(D, zeros, meta, "ddim20"), ddim_sample(D, zeros, meta, "ddim20", eta=0.5)):
        assert out.shape == meta.shape and out.device.type == "meta"
