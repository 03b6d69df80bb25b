"""Training data for both stages behind one small interface.

- Stage 1 streams from one or more prior LMDBs through a ``DataLoader`` (workers open the LMDB lazily),
  mixed by weight through :class:`~dre.train.shards.EpochStream`.
- Stage 2 holds the whole (small) album in memory on the training device, as the original does, and
  draws from the same kind of stream (so a batch larger than the album still works: a pass ends and
  the next, reshuffled, begins).

Either way each rank yields only its slice of the step's global batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from dre.data import FaceDataset, LmdbAlbum, load_album_tensors
from dre.errors import DreError
from dre.train.shards import EpochStream, StepBatchSampler, derive_seed, rank_slice

log = logging.getLogger(__name__)


@dataclass
class DataInfo:
    """What the exported model records about its data (see the model-file ``meta``)."""

    lmdbs: list[str]
    lengths: list[int]
    extractor: str | None = None
    mean_shape: list[float] | None = None
    synthetic: bool = False


def inspect_lmdbs(paths: Sequence[str], image_size: int) -> DataInfo:
    """Open each LMDB's metadata and check it can feed a model of ``image_size``: clear errors if not."""
    lengths, extractors = [], []
    synthetic = False
    mean_shape = None
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise DreError(f"--lmdb {p}: no such LMDB folder (build it with `dre pack`)")
        try:
            album = LmdbAlbum(path)
            meta = dict(album.meta)
            n = len(album)
            album.close()  # workers reopen lazily; nothing stays mapped in the parent
        except DreError:
            raise
        except Exception as exc:
            raise DreError(f"--lmdb {p}: not a readable dre LMDB ({type(exc).__name__}: {exc})") from exc
        if n == 0:
            raise DreError(f"--lmdb {p} is empty (0 samples): check the `dre pack` log for skipped images")
        size = meta.get("image_size")
        if size is not None and int(size) != image_size:
            raise DreError(
                f"--lmdb {p} holds {size}² images but the model is configured for --image-size {image_size}; "
                "pack the LMDB at the model's size or change --image-size"
            )
        lengths.append(n)
        if meta.get("extractor"):
            extractors.append(str(meta["extractor"]))
        synthetic = synthetic or bool(meta.get("synthetic", False))
        if meta.get("mean_shape") is not None:
            mean_shape = [float(x) for x in meta["mean_shape"]]
    kinds = sorted(set(extractors))
    if len(kinds) > 1:
        log.warning("mixing LMDBs made by different extractors (%s): their buffers differ in style", kinds)
    return DataInfo(list(map(str, paths)), lengths, kinds[0] if len(kinds) == 1 else ("+".join(kinds) or None),
                    mean_shape if len(paths) == 1 else None, synthetic)


class LmdbData:
    """Stage 1: prior LMDBs streamed through DataLoader workers."""

    def __init__(self, info: DataInfo, num_workers: int, seed: int) -> None:
        self.info = info
        self.dataset = FaceDataset(info.lmdbs)  # indices are global over the LMDBs, as the stream's
        if self.dataset.lengths != info.lengths:
            raise DreError(f"LMDB lengths changed while opening them: {info.lengths} vs {self.dataset.lengths}")
        self.num_workers = num_workers
        self.seed = seed

    def batches(self, stream: EpochStream, global_batch: int, rank: int, world: int, start: int, end: int,
                device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sampler = StepBatchSampler(stream, global_batch, rank, world, start, end)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if self.num_workers > 0 else None,
            # its own generator: creating the iterator must not consume the global torch RNG (exact resume)
            generator=torch.Generator().manual_seed(derive_seed(self.seed, "loader", start)),
        )
        for batch in loader:
            yield (batch["image"].to(device, non_blocking=True), batch["cond"].to(device, non_blocking=True))

    def fixed(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` samples (for sample grids): the same batch every time."""
        n = min(n, len(self.dataset))
        items = [self.dataset[i] for i in range(n)]
        return (torch.stack([it["image"] for it in items]).to(device),
                torch.stack([it["cond"] for it in items]).to(device))


class MemoryData:
    """Stage 2: the whole album as two tensors on the training device."""

    def __init__(self, info: DataInfo, device: torch.device) -> None:
        images, cond = load_album_tensors(info.lmdbs[0])  # as many conds as images, at least one
        self.images, self.cond, self.info = images.to(device), cond.to(device), info

    def batches(self, stream: EpochStream, global_batch: int, rank: int, world: int, start: int, end: int,
                device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        part = rank_slice(global_batch, rank, world)
        images, cond = self.images.to(device), self.cond.to(device)
        for s in range(start, end):
            idx = torch.as_tensor(stream.global_batch(s, global_batch)[part], device=device)
            yield images.index_select(0, idx), cond.index_select(0, idx)

    def fixed(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        n = min(n, self.images.shape[0])
        return self.images[:n].to(device), self.cond[:n].to(device)
