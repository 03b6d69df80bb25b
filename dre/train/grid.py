"""Sample grids: rows of image batches in [-1, 1] tiled into one PNG (written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from dre.safety.atomic import atomic_path


def grid_array(rows: Sequence[torch.Tensor], pad: int = 2) -> np.ndarray:
    """(H_total, W_total, 3) uint8: one row per batch (B,3,H,W) in [-1, 1], B columns, white gutters."""
    b = max(r.shape[0] for r in rows)
    h, w = rows[0].shape[-2:]
    out = np.full((len(rows) * (h + pad) + pad, b * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        img = ((row.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        img = img.permute(0, 2, 3, 1).numpy()
        for j in range(img.shape[0]):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y: y + h, x: x + w] = img[j]
    return out


def save_grid(path: str | Path, rows: Sequence[torch.Tensor]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(grid_array(rows)).save(tmp, format="PNG")
    return path
