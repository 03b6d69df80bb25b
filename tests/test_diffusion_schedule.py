"""Schedules, forward process, P2 loss, timestep sampling and respacing against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from dre.diffusion import DiffusionConfig, GaussianDiffusion, space_timesteps
from dre.errors import DreError
from dre.train.shards import step_timesteps

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def closed_form_linear_abar(t: int, T: int = 1000) -> float:
    scale = 1000.0 / T
    lo, hi = scale * 1e-4, scale * 0.02
    return math.prod(1.0 - (lo + (hi - lo) * i / (T - 1)) for i in range(t + 1))


def test_linear_schedule_against_closed_form() -> None:
    d = GaussianDiffusion(DiffusionConfig())
    assert d.betas.dtype == torch.float64 and d.alphas_cumprod.dtype == torch.float64
    for t in (0, 250, 500, 999):
        assert d.alphas_cumprod[t].item() == pytest.approx(closed_form_linear_abar(t), rel=1e-12)
    # the published schedule's rounded values (docs/reference.md)
    assert d.alphas_cumprod[0].item() == pytest.approx(0.9999, rel=1e-12)
    assert d.alphas_cumprod[250].item() == pytest.approx(0.521, abs=1e-3)
    assert d.alphas_cumprod[500].item() == pytest.approx(0.078, abs=1e-3)
    assert d.alphas_cumprod[950].item() == pytest.approx(1.06e-4, rel=2e-2)
    assert d.alphas_cumprod[999].item() == pytest.approx(4.0e-5, rel=2e-2)
    # other T rescales the end points by 1000/T
    d250 = GaussianDiffusion(DiffusionConfig(steps=250))
    assert d250.betas[0].item() == pytest.approx(4e-4) and d250.betas[-1].item() == pytest.approx(0.08)
    assert d250.alphas_cumprod[100].item() == pytest.approx(closed_form_linear_abar(100, 250), rel=1e-12)


def test_cosine_schedule_telescopes_to_closed_form() -> None:
    d = GaussianDiffusion(DiffusionConfig(schedule="cosine"))

    def f(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 100, 500, 900, 990):
        assert d.alphas_cumprod[t].item() == pytest.approx(f((t + 1) / 1000) / f(0), rel=1e-10)
    assert d.betas.max().item() == pytest.approx(0.999)  # the clip at the end of the schedule


def test_bad_schedule_is_an_error() -> None:
    with pytest.raises(DreError, match="schedule"):
        DiffusionConfig(schedule="sigmoid")


def test_q_sample_statistics() -> None:
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(0)
    n = 200_000
    for t_val in (10, 400, 900):
        x0 = torch.full((n,), 0.7)
        t = torch.full((n,), t_val, dtype=torch.long)
        x = d.q_sample(x0, t, torch.randn(n, generator=g))
        a = d.alphas_cumprod[t_val].item()
        assert x.mean().item() == pytest.approx(math.sqrt(a) * 0.7, abs=5e-3)
        assert x.std().item() == pytest.approx(math.sqrt(1 - a), rel=1e-2)
    # broadcast per sample over image dims; t may differ per sample
    x0 = torch.randn(3, 3, 4, 4)
    noise = torch.randn(3, 3, 4, 4)
    t = torch.tensor([0, 500, 999])
    x = d.q_sample(x0, t, noise)
    for i in range(3):
        a = d.alphas_cumprod[t[i]].item()
        torch.testing.assert_close(x[i], math.sqrt(a) * x0[i] + math.sqrt(1 - a) * noise[i])


def test_p2_weights_formula() -> None:
    d = GaussianDiffusion(DiffusionConfig(p2_gamma=1.0, p2_k=1.0))
    torch.testing.assert_close(d.p2, 1.0 - d.alphas_cumprod, rtol=1e-10, atol=1e-14)
    assert d.p2[0].item() == pytest.approx(1e-4, rel=1e-6)
    off = GaussianDiffusion(DiffusionConfig(p2_gamma=0.0))
    assert torch.all(off.p2 == 1.0)
    g = GaussianDiffusion(DiffusionConfig(p2_gamma=0.5, p2_k=2.0))
    a = g.alphas_cumprod
    torch.testing.assert_close(g.p2, (2.0 + a / (1 - a)) ** -0.5)


def test_training_losses_weighted_and_unweighted() -> None:
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    out = d.training_losses(lambda x, tt: torch.zeros_like(x), x0, t, noise)
    assert set(out) == {"loss", "mse"} and out["loss"].shape == (4,)
    torch.testing.assert_close(out["mse"], noise.square().mean(dim=(1, 2, 3)))
    torch.testing.assert_close(out["loss"], (1 - d.alphas_cumprod[t]).float() * out["mse"])

    def oracle(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:  # exact ε from the known x0
        a = d.alphas_cumprod[tt].float()[:, None, None, None]
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    exact = d.training_losses(oracle, x0, t, noise)
    assert exact["mse"].max().item() < 1e-6


def test_training_timesteps_are_uniform() -> None:
    """Training draws t uniformly over {0, …, T−1} (the original's UniformSampler), per (seed, step)."""
    t = torch.cat([step_timesteps(0, s, 10_000, slice(0, 10_000), 1000) for s in range(10)])
    assert t.dtype == torch.long and t.min() >= 0 and t.max() <= 999
    hist = torch.bincount(t // 100, minlength=10).double()
    assert (hist / hist.sum() - 0.1).abs().max().item() < 0.01


def test_respacing_lists() -> None:
    assert space_timesteps(1000, "ddim20") == list(range(0, 1000, 50))
    assert space_timesteps(1000, "ddim25") == list(range(0, 1000, 40))
    assert space_timesteps(1000, "ddim7") == list(range(0, 1000, 143))
    assert space_timesteps(10, "ddim4") == [0, 3, 6, 9]
    assert space_timesteps(1000, "") == list(range(1000))
    assert space_timesteps(1000, "1000") == list(range(1000))
    assert space_timesteps(1000, "10") == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    # Python round (half to even): 4.5 → 4, and 24.5 → 24
    assert space_timesteps(10, "3") == [0, 4, 9]
    assert space_timesteps(100, "4,3") == [0, 16, 33, 49, 50, 74, 99]
    # uneven sections: the first T mod n sections get one more step
    assert space_timesteps(10, "1,1,1") == [0, 4, 7]
    assert space_timesteps(10, [2, 2]) == [0, 4, 5, 9]
    for bad in ("ddim60", "ddimx", "a,b", "60,60"):
        with pytest.raises(DreError):
            space_timesteps(100, bad)


def test_spaced_schedule_keeps_alpha_bar() -> None:
    d = GaussianDiffusion()
    s = d.spaced("ddim20")
    assert s.num_steps == 20 and s.timesteps.tolist() == list(range(0, 1000, 50))
    torch.testing.assert_close(torch.cumprod(1 - s.betas, 0), d.alphas_cumprod[s.timesteps], rtol=1e-12, atol=0)
    assert s.betas[0].item() == pytest.approx(1 - d.alphas_cumprod[0].item())
    assert s.betas[1].item() == pytest.approx(1 - d.alphas_cumprod[50].item() / d.alphas_cumprod[0].item())
    assert d.spaced("ddim20") is s  # cached
    full = d.spaced("")
    torch.testing.assert_close(full.betas, d.betas, rtol=1e-10, atol=1e-15)
