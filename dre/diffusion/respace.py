"""Timestep respacing: which of the T training steps a sampler visits, and the sub-schedule they form.

Spec strings behave as the original's (docs/reference.md):

* ``""``: every step (0 … T−1).
* ``"ddimN"``: ``range(0, T, stride)`` for the integer stride that gives exactly N steps
  (``ddim20`` with T = 1000 → 0, 50, …, 950); an error if no stride does.
* ``"a,b,c"``: T is cut into len(list) near-equal sections (the first T mod len get one extra
  step); section i contributes ``count_i`` steps evenly spaced over it, positions rounded with
  Python's ``round`` (half to even), i.e. exactly the original's choice.

The sub-schedule keeps ᾱ at the visited steps and recomputes β'_i = 1 − ᾱ_{t_i}/ᾱ_{t_{i−1}}.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from dre.errors import DreError


def space_timesteps(num_timesteps: int, spec: str | Sequence[int]) -> list[int]:
    """Sorted original timesteps selected by ``spec`` (see the module docstring)."""
    if isinstance(spec, str):
        s = spec.strip()
        if not s:
            return list(range(num_timesteps))
        if s.startswith("ddim"):
            try:
                want = int(s[len("ddim"):])
            except ValueError:
                raise DreError(f"respacing {spec!r}: expected ddimN with an integer N") from None
            for stride in range(1, max(num_timesteps, 2)):  # stride 1 is tried even when T == 1
                if len(range(0, num_timesteps, stride)) == want:
                    return list(range(0, num_timesteps, stride))
            raise DreError(f"respacing {spec!r}: no integer stride gives exactly {want} of {num_timesteps} steps")
        try:
            counts = [int(x) for x in s.split(",")]
        except ValueError:
            raise DreError(f"respacing {spec!r}: expected '', 'ddimN' or a comma list of integers") from None
    else:
        counts = [int(x) for x in spec]
    if not counts or any(c < 0 for c in counts):
        raise DreError(f"respacing {spec!r}: section counts must be non-negative integers")
    size_per, extra = divmod(num_timesteps, len(counts))
    start = 0
    steps: set[int] = set()
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise DreError(f"respacing {spec!r}: cannot take {count} steps from a section of {size}")
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        pos = 0.0
        for _ in range(count):
            steps.add(start + round(pos))
            pos += stride
        start += size
    if not steps:
        raise DreError(f"respacing {spec!r} selects no timesteps")
    return sorted(steps)


class SpacedSchedule:
    """Coefficient tables (float64 on CPU, float32 per device on demand) over the visited steps.

    Index i = 0 … N−1 runs over the visited steps in increasing t; ``timesteps[i]`` is the original
    t the model is called with. Built from the full schedule's ᾱ table alone (what
    :meth:`dre.diffusion.schedule.GaussianDiffusion.spaced` passes), so respacing needs nothing else
    from the forward process.
    """

    def __init__(self, alphas_cumprod: Tensor, spec: str | Sequence[int]) -> None:
        steps = space_timesteps(int(alphas_cumprod.shape[0]), spec)
        self.timesteps = torch.tensor(steps, dtype=torch.long)
        self.num_steps = len(steps)
        ac = alphas_cumprod[self.timesteps]
        one = torch.ones(1, dtype=torch.float64)
        ac_prev = torch.cat([one, ac[:-1]])
        self.alphas_cumprod = ac
        self.alphas_cumprod_prev = ac_prev
        self.betas = 1.0 - ac / ac_prev
        alphas = 1.0 - self.betas
        self.posterior_variance = self.betas * (1.0 - ac_prev) / (1.0 - ac)
        self.posterior_mean_coef1 = self.betas * ac_prev.sqrt() / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac)
        # FIXED_LARGE variance: β'_i, except index 0 which takes the posterior variance at index 1
        if self.num_steps > 1:
            self.fixed_large_variance = torch.cat([self.posterior_variance[1:2], self.betas[1:]])
        else:
            self.fixed_large_variance = self.betas.clone()
        self._t_cache: dict[str, Tensor] = {}

    def timesteps_on(self, device: torch.device | str) -> Tensor:
        """The visited original timesteps as a long tensor on ``device`` (copied once, then cached)."""
        key = str(device)
        if key not in self._t_cache:
            self._t_cache[key] = self.timesteps.to(device)
        return self._t_cache[key]
