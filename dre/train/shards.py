"""Stateless data order and noise: everything random about step ``s`` is a function of (seed, s).

Why stateless: a run resumed at step k must see exactly the batches, timesteps and noise the
uninterrupted run saw from step k on, and a run split over N processes must see the same *global*
batch as one process. Both hold if the global batch of step s, and the timestep and noise of slot j
of that batch, are pure functions of (seed, s, j): the "data-order RNG state" in a checkpoint is then
just the step number, and each rank takes its slice ``[rank·b, (rank+1)·b)`` of the global batch.
(Dropout is the one draw left to the torch RNG; its per-rank state is saved in checkpoints.)
"""

from __future__ import annotations

import hashlib
import struct
from typing import Callable, Sequence

import numpy as np
import torch

from dre.errors import DreError


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed mixed from ``parts`` (stable across processes, platforms and Python versions)."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        data = p.encode() if isinstance(p, str) else struct.pack("<q", int(p))
        h.update(struct.pack("<I", len(data)) + data)
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def _span(start: int, count: int, size: int, block: Callable[[int], np.ndarray]) -> np.ndarray:
    """Items ``start .. start+count`` of the endless concatenation ``block(0), block(1), …`` of ``size`` items each."""
    out = np.empty(count, dtype=np.int64)
    filled = 0
    while filled < count:
        b, off = divmod(start + filled, size)
        n = min(size - off, count - filled)
        out[filled: filled + n] = block(b)[off: off + n]
        filled += n
    return out


class EpochStream:
    """An endless, deterministic stream of sample indices mixing several datasets by weight.

    A *virtual epoch* has ``L = Σ n_k`` slots; dataset k fills ``round(w_k · L)`` of them by walking its
    own endless sequence of shuffled passes (so every sample of a dataset is seen once per pass, without
    replacement), and the epoch's slots are then shuffled together. Indices are global: dataset k's
    sample i is ``offset_k + i`` (the order of a ``ConcatDataset`` over the same datasets).
    """

    def __init__(self, lengths: Sequence[int], weights: Sequence[float], seed: int) -> None:
        if len(lengths) != len(weights):
            raise ValueError("one weight per dataset")
        self.lengths = [int(n) for n in lengths]
        for k, n in enumerate(self.lengths):
            if n <= 0 and weights[k] > 0:
                raise DreError(f"dataset {k} is empty but has mixing weight {weights[k]}")
        total_w = float(sum(weights))
        self.weights = [float(w) / total_w for w in weights]
        self.seed = int(seed)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.epoch_len = int(sum(self.lengths))
        raw = [w * self.epoch_len for w in self.weights]
        counts = [int(np.floor(r)) for r in raw]
        # largest remainders get the leftover slots, so the counts sum to L exactly
        for k in sorted(range(len(raw)), key=lambda k: raw[k] - counts[k], reverse=True)[: self.epoch_len - sum(counts)]:
            counts[k] += 1
        self.counts = counts
        self._cache: tuple[int, np.ndarray] | None = None
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def _pass(self, k: int, cycle: int) -> np.ndarray:
        key = (k, cycle)
        if key not in self._perm_cache:
            if len(self._perm_cache) > 8:
                self._perm_cache.clear()
            rng = np.random.Generator(np.random.PCG64(derive_seed(self.seed, "pass", k, cycle)))
            self._perm_cache[key] = rng.permutation(self.lengths[k]).astype(np.int64)
        return self._perm_cache[key]

    def _dataset_items(self, k: int, start: int, count: int) -> np.ndarray:
        """Items ``start .. start+count`` of dataset k's endless sequence of shuffled passes."""
        return _span(start, count, self.lengths[k], lambda cycle: self._pass(k, cycle)) + self.offsets[k]

    def epoch(self, e: int) -> np.ndarray:
        """The shuffled global indices of virtual epoch ``e``."""
        if self._cache is not None and self._cache[0] == e:
            return self._cache[1]
        parts = [self._dataset_items(k, e * c, c) for k, c in enumerate(self.counts) if c > 0]
        items = np.concatenate(parts)
        rng = np.random.Generator(np.random.PCG64(derive_seed(self.seed, "epoch", e)))
        items = items[rng.permutation(len(items))]
        self._cache = (e, items)
        return items

    def take(self, start: int, count: int) -> np.ndarray:
        """Stream positions ``start .. start+count``."""
        return _span(start, count, self.epoch_len, self.epoch)

    def global_batch(self, step: int, batch: int) -> np.ndarray:
        """The global batch of (0-based) optimiser step ``step``."""
        return self.take(step * batch, batch)


def rank_slice(global_batch: int, rank: int, world: int) -> slice:
    """This rank's part of a global batch (contiguous, so concatenating ranks gives the global order)."""
    if global_batch % world:
        raise DreError(
            f"--batch-size {global_batch} is the global batch and must be divisible by the number of "
            f"processes ({world}); use a multiple of {world}"
        )
    b = global_batch // world
    return slice(rank * b, (rank + 1) * b)


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields this rank's index list for steps ``start_step .. end_step`` (a DataLoader batch sampler)."""

    def __init__(self, stream: EpochStream, global_batch: int, rank: int, world: int,
                 start_step: int, end_step: int) -> None:
        self.stream, self.global_batch = stream, global_batch
        self.part = rank_slice(global_batch, rank, world)
        self.start_step, self.end_step = start_step, end_step

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def __iter__(self):
        for s in range(self.start_step, self.end_step):
            yield self.stream.global_batch(s, self.global_batch)[self.part].tolist()


def step_timesteps(seed: int, step: int, global_batch: int, part: slice, num_steps: int) -> torch.Tensor:
    """Uniform timesteps for the global batch of ``step`` (CPU int64), sliced to this rank's part."""
    g = torch.Generator().manual_seed(derive_seed(seed, "t", step))
    return torch.randint(0, num_steps, (global_batch,), generator=g)[part]


def step_noise(seed: int, step: int, part: slice, shape: Sequence[int], device: torch.device,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gaussian noise for slots ``part`` of step ``step``: slot j's noise depends on (seed, step, j) only."""
    out = torch.empty((part.stop - part.start, *shape), device=device, dtype=dtype)
    g = torch.Generator(device=device)
    for i, slot in enumerate(range(part.start, part.stop)):
        g.manual_seed(derive_seed(seed, "noise", step, slot))
        out[i] = torch.randn(tuple(shape), generator=g, device=device, dtype=dtype)
    return out
