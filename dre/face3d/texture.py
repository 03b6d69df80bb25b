"""FLAME texture space → UV albedo map, and the template's UV layout in ``grid_sample`` coordinates.

Also the loader of the texture space file (``FLAME_texture.npz``), validated as the FLAME release ships it.

DiffusionRig feeds DECA's 50 ``tex`` codes into the FLAME texture space (``FLAME_texture.npz``):
``albedo = mean/255 + tex_dir[..., :50]/255 · tex`` on a 512² BGR map, nearest-resized to the 256² UV
size and flipped to RGB. Nearest resizing only *selects* texels, so the selection is done once on the
basis itself: the per-image product then costs a quarter of the original and gives identical values
(``tests/test_face3d_render.py`` checks it against ``F.interpolate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dre.assets.catalog import TEXTURE_FILE, expect, official_sizes_required, require_file, where_to_get
from dre.errors import DreError

UV_SIZE = 256
N_TEX = 50
TEXTURE_SIZE = 512  # the official FLAME texture space: 512² texels ...
TEXTURE_PCS = 200  # ... and 200 components


@dataclass
class FlameTexture:
    """FLAME texture space, values 0-255, BGR channel order (as the file stores it).

    ``albedo = (mean + tex_dir @ tex) / 255``, then BGR→RGB (docs/reference.md). The official file is
    512² with 200 components; only the first ``n_tex`` are kept.
    """

    mean: np.ndarray  # (H, W, 3) float32
    tex_dir: np.ndarray  # (H, W, 3, n_tex) float32


def load_flame_texture(path: str | Path, *, n_tex: int = 50, official: bool | None = None) -> FlameTexture:
    path = Path(path)
    require_file(path, TEXTURE_FILE, "FLAME texture space")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            expect({"mean", "tex_dir"} <= names, path, TEXTURE_FILE, f"has keys {sorted(names)}, expected mean, tex_dir")
            mean = z["mean"]
            tex_dir = z["tex_dir"]
    except (OSError, ValueError) as exc:
        raise DreError(f"{path}: not a readable .npz ({exc}). Get it: {where_to_get(TEXTURE_FILE)}") from exc
    expect(
        mean.ndim == 3 and mean.shape[2] == 3 and mean.shape[0] == mean.shape[1], path, TEXTURE_FILE,
        f"mean has shape {mean.shape}, expected (512, 512, 3)",
    )
    expect(
        tex_dir.ndim == 4 and tex_dir.shape[:3] == mean.shape and tex_dir.shape[3] >= n_tex, path, TEXTURE_FILE,
        f"tex_dir has shape {tex_dir.shape}, expected {mean.shape + (TEXTURE_PCS,)} (at least {n_tex} components)",
    )
    if official_sizes_required(path, official):
        expect(
            mean.shape == (TEXTURE_SIZE, TEXTURE_SIZE, 3) and tex_dir.shape[3] == TEXTURE_PCS, path, TEXTURE_FILE,
            f"mean {mean.shape} / tex_dir {tex_dir.shape}: the FLAME texture space is 512x512x3 with 200 components",
        )
    return FlameTexture(
        mean=np.ascontiguousarray(mean, dtype=np.float32),
        tex_dir=np.ascontiguousarray(tex_dir[..., :n_tex], dtype=np.float32),
    )


def nearest_indices(in_size: int, out_size: int) -> torch.Tensor:
    """Source indices PyTorch's ``F.interpolate(mode="nearest")`` reads: ``floor(i · in/out)``."""
    scale = in_size / out_size
    idx = torch.floor(torch.arange(out_size, dtype=torch.float32) * scale).long()
    return idx.clamp(max=in_size - 1)


class TextureSpace(nn.Module):
    """Linear albedo model ``(B, n_tex) → (B, 3, uv, uv)`` RGB, unclamped."""

    def __init__(
        self,
        mean: np.ndarray | torch.Tensor,
        basis: np.ndarray | torch.Tensor,
        n_tex: int = N_TEX,
        uv_size: int = UV_SIZE,
    ) -> None:
        """``mean`` (H, W, 3) and ``basis`` (H, W, 3, K≥n_tex) as in ``FLAME_texture.npz`` (0–255, BGR)."""
        super().__init__()
        mean_t = torch.as_tensor(np.asarray(mean), dtype=torch.float32)
        basis_t = torch.as_tensor(np.asarray(basis)) if not isinstance(basis, torch.Tensor) else basis
        if mean_t.ndim != 3 or mean_t.shape[2] != 3:
            raise ValueError(f"texture mean must be (H, W, 3), got {tuple(mean_t.shape)}")
        if basis_t.ndim != 4 or tuple(basis_t.shape[:3]) != tuple(mean_t.shape) or basis_t.shape[3] < n_tex:
            raise ValueError(f"texture basis must be (H, W, 3, >={n_tex}) matching the mean, got {tuple(basis_t.shape)}")
        h, w = mean_t.shape[:2]
        rows, cols = nearest_indices(h, uv_size), nearest_indices(w, uv_size)
        chan = torch.tensor([2, 1, 0])  # the file is BGR ...
        scale = 1 / 255.0  # ... with values 0–255
        # slice the components first and gather rows and columns together: only selected texels are copied
        mean_sel = mean_t[rows[:, None], cols[None, :]][:, :, chan] * scale  # (uv, uv, 3)
        basis_sel = basis_t[..., :n_tex][rows[:, None], cols[None, :]][:, :, chan].to(torch.float32) * scale
        self.register_buffer("mean", mean_sel.permute(2, 0, 1).reshape(-1).contiguous(), persistent=False)
        self.register_buffer("basis", basis_sel.permute(3, 2, 0, 1).reshape(n_tex, -1).contiguous(), persistent=False)
        self.n_tex = n_tex
        self.uv_size = uv_size

    def forward(self, tex: torch.Tensor) -> torch.Tensor:
        if tex.ndim != 2 or tex.shape[1] != self.n_tex:
            raise ValueError(f"tex codes must be (B, {self.n_tex}), got {tuple(tex.shape)}")
        flat = torch.addmm(self.mean, tex.to(self.basis.dtype), self.basis)
        return flat.view(-1, 3, self.uv_size, self.uv_size)


def face_uv_grid(verts_uvs: np.ndarray | torch.Tensor, faces_uvs: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-corner UVs (F, 3, 2) of the template OBJ in ``grid_sample`` coordinates.

    ``verts_uvs`` (T, 2) are the OBJ ``vt`` (u right, v up, in [0, 1]); ``faces_uvs`` (F, 3) the 0-based
    ``vt`` index of each corner. DECA maps ``(u, v) → (2u - 1, -(2v - 1))`` so that v = 1 is the top row.
    """
    vt = torch.as_tensor(np.asarray(verts_uvs), dtype=torch.float32)
    ft = torch.as_tensor(np.asarray(faces_uvs)).long()
    if vt.ndim != 2 or vt.shape[1] < 2:
        raise ValueError(f"UV coordinates must be (T, 2), got {tuple(vt.shape)}")
    if ft.ndim != 2 or ft.shape[1] != 3 or int(ft.min()) < 0 or int(ft.max()) >= vt.shape[0]:
        raise ValueError("UV face indices must be (F, 3) 0-based indices into the UV coordinates")
    grid = torch.stack([vt[:, 0] * 2 - 1, -(vt[:, 1] * 2 - 1)], dim=-1)
    return grid[ft]
