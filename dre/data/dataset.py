"""Training datasets over ``dre`` LMDBs: one or several stores, weighted mixing, per-rank sharding.

* :class:`FaceDataset` concatenates LMDBs (e.g. FFHQ + AffectNet for stage 1) and returns the image in
  [-1, 1] and the 9 condition channels in the original order (rendered, normal, albedo), unnormalised,
  exactly as DiffusionRig trains on them.
* :func:`weighted_sampler` mixes the stores by weight, shards the epoch across ranks and is
  deterministic per ``(seed, epoch)``, so every rank draws the same global order without talking.
* :func:`load_album_tensors` loads a whole (small, stage-2) album into memory.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from dre.data import schema
from dre.data.store import LmdbAlbum
from dre.errors import DreError

if TYPE_CHECKING:
    import torch

try:
    from torch.utils.data import Dataset as _TorchDataset
    from torch.utils.data import Sampler as _TorchSampler
except ImportError:  # pragma: no cover - the main environment always has torch
    _TorchDataset = object  # type: ignore[assignment,misc]
    _TorchSampler = object  # type: ignore[assignment,misc]


def _as_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str | os.PathLike[str]]:
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    return list(paths)


class FaceDataset(_TorchDataset):
    """Samples ``{"image": (3,H,W) float32 in [-1,1], "cond": (9,H,W) float32}`` from one or more LMDBs.

    ``flip=True`` mirrors each sample left-right with probability 1/2 (torch's RNG, seeded per worker by
    the DataLoader). Image and buffers flip together and the normal's x component changes sign so the
    buffers still describe the mirrored face. It is off by default because the original trains without
    it and a personal album may be deliberately asymmetric.
    """

    def __init__(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, flip: bool = False) -> None:
        plist = _as_paths(paths)
        if not plist:
            raise DreError("FaceDataset needs at least one LMDB path")
        self.albums = [LmdbAlbum(p) for p in plist]
        sizes = {a.image_size for a in self.albums}
        if len(sizes) != 1:
            detail = ", ".join(f"{a.path} ({a.image_size})" for a in self.albums)
            raise DreError(f"the LMDBs have different image sizes: {detail}; pack them with one --size")
        self.image_size = sizes.pop()
        self.lengths = [len(a) for a in self.albums]
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        self.flip = flip

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, i: int) -> tuple[int, int]:
        """Global index → (album number, index inside that album)."""
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range ({len(self)} samples)")
        a = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return a, i - int(self.offsets[a])

    def __getitem__(self, i: int) -> dict[str, "torch.Tensor"]:
        import torch

        a, j = self.locate(int(i))
        album = self.albums[a]
        img = album.image(j)  # (H,W,3) uint8
        image = torch.from_numpy(img).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        cond_t = album.cond(j)
        if self.flip and bool(torch.rand(()) < 0.5):
            image = image.flip(-1)
            cond_t = cond_t.flip(-1)
            cond_t[schema.NORMAL_X_CHANNEL].neg_()
        return {"image": image.contiguous(), "cond": cond_t.contiguous()}


class WeightedShardSampler(_TorchSampler):
    """Per-rank shard of a weighted mix of the dataset's LMDBs; deterministic per (seed, epoch).

    Each epoch draws ``num_samples`` global indices (default: the dataset's length): LMDB ``k`` gets
    ``num_samples · w_k / Σw`` of them (largest remainders get the rounding), taken from a fresh
    permutation of that LMDB (repeated permutations when it is over-sampled, so every sample of it
    appears as evenly as possible). The global list is shuffled and rank ``r`` takes ``[r::world]``, so
    ranks are disjoint and together cover the epoch once. With weights proportional to the LMDB sizes
    (the default), each sample appears exactly once per epoch across ranks.

    ``set_epoch`` picks the epoch; each completed ``__iter__`` also advances it, so a plain loop over
    epochs does not replay one order.
    """

    def __init__(self, dataset: FaceDataset, weights: Sequence[float] | None = None, rank: int = 0, world: int = 1,
                 seed: int = 0, num_samples: int | None = None) -> None:  # fmt: skip
        lengths = list(dataset.lengths)
        if weights is None:
            weights = [float(n) for n in lengths]
        weights = [float(w) for w in weights]
        if len(weights) != len(lengths):
            raise DreError(f"{len(weights)} sampling weights for {len(lengths)} LMDBs")
        if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
            raise DreError(f"sampling weights must be finite, non-negative and not all zero: {weights}")
        for w, n, album in zip(weights, lengths, dataset.albums):
            if w > 0 and n == 0:
                raise DreError(f"{album.path} is empty but has sampling weight {w}")
        if world < 1 or not 0 <= rank < world:
            raise DreError(f"rank {rank} is not in [0, world={world})")
        self.lengths = lengths
        self.offsets = [int(o) for o in dataset.offsets[:-1]]
        self.weights = weights
        self.rank, self.world, self.seed = rank, world, seed
        self.num_samples = int(num_samples if num_samples is not None else sum(lengths))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _counts(self) -> list[int]:
        total = sum(self.weights)
        exact = [self.num_samples * w / total for w in self.weights]
        counts = [int(math.floor(e)) for e in exact]
        short = self.num_samples - sum(counts)
        order = sorted(range(len(exact)), key=lambda k: (-(exact[k] - counts[k]), k))
        for k in order[:short]:
            counts[k] += 1
        return counts

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """The global (all ranks) index order of ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        parts = []
        for k, (count, n, off) in enumerate(zip(self._counts(), self.lengths, self.offsets)):
            if count == 0:
                continue
            reps = -(-count // n)
            perm = np.concatenate([rng.permutation(n) for _ in range(reps)])[:count]
            parts.append(perm + off)
        idx = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return idx[rng.permutation(idx.size)]

    def __iter__(self) -> Iterator[int]:
        idx = self.epoch_indices(self.epoch)[self.rank :: self.world]
        self.epoch += 1
        return iter(idx.tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world))


def weighted_sampler(dataset: FaceDataset, weights: Sequence[float] | None = None, rank: int = 0, world: int = 1,
                     seed: int = 0) -> WeightedShardSampler:  # fmt: skip
    """Sampler mixing ``dataset``'s LMDBs by ``weights`` (None: by size), sharded for ``rank`` of ``world``."""
    return WeightedShardSampler(dataset, weights, rank, world, seed)


def load_album_tensors(path: str | os.PathLike[str]) -> tuple["torch.Tensor", "torch.Tensor"]:
    """A whole album in memory: images (N,3,H,W) in [-1,1] and cond (N,9,H,W), both float32.

    Stage 2 trains on ~20 images; holding them as tensors avoids a loader altogether.
    """
    import torch

    album = LmdbAlbum(path)
    n, s = len(album), album.image_size
    if n == 0:
        raise DreError(f"{path} holds no samples")
    images = torch.empty((n, 3, s, s), dtype=torch.float32)
    cond = torch.empty((n, len(schema.BUFFER_CHANNELS), s, s), dtype=torch.float32)
    for i in range(n):
        images[i] = torch.from_numpy(album.image(i)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        album.cond_into(i, cond[i])
    album.close()
    return images, cond
