"""Training datasets over ``dre`` LMDBs: one or several stores, and whole albums in memory.

* :class:`FaceDataset` concatenates LMDBs (e.g. FFHQ + AffectNet for stage 1) and returns the image in
  [-1, 1] and the 9 condition channels in the original order (rendered, normal, albedo), unnormalised,
  exactly as DiffusionRig trains on them.
* Which samples a training step reads (mixing by weight, per-rank slices, exact resume) is decided
  by :mod:`dre.train.shards`, not here.
* :func:`load_album_tensors` loads a whole (small, stage-2) album into memory.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dre.data import schema
from dre.data.store import LmdbAlbum
from dre.errors import DreError


class FaceDataset(Dataset):
    """Samples ``{"image": (3,H,W) float32 in [-1,1], "cond": (9,H,W) float32}`` from one or more LMDBs.

    ``flip=True`` mirrors each sample left-right with probability 1/2 (torch's RNG, seeded per worker by
    the DataLoader). Image and buffers flip together and the normal's x component changes sign so the
    buffers still describe the mirrored face. It is off by default because the original trains without
    it and a personal album may be deliberately asymmetric.
    """

    def __init__(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, flip: bool = False) -> None:
        plist = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
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

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
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


def load_album_tensors(path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole album in memory: images (N,3,H,W) in [-1,1] and cond (N,9,H,W), both float32.

    Stage 2 trains on ~20 images; holding them as tensors avoids a loader altogether.
    """
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
