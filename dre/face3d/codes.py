"""FLAME/DECA code batches and rendered physical buffers: the currency between extract, pack and edit.

The layout is DECA's (shape 100, tex 50, exp 50, pose 6 = global + jaw axis-angle, cam 3 = orthographic
scale and translation, light 9×3 = SH coefficient × RGB). EMOCA writes the same layout, which is what
makes the extractor pluggable. ``tform`` travels beside the codes: the 3×3 similarity that maps aligned
image pixels to the 224² DECA crop (skimage convention), needed to render back into the aligned image.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

# torch is imported inside the methods: the code layout (CODE_DIMS, CODE_ORDER) is read by table
# definitions that the alignment environment loads, and must not pull torch in with it.
if TYPE_CHECKING:
    import pandas as pd
    import torch  # lazy: see the note above FlameCodes

CODE_DIMS: dict[str, int] = {"shape": 100, "tex": 50, "exp": 50, "pose": 6, "cam": 3, "light": 27}
"""Flat size of each code; their sum (236) is the DECA coarse encoder's output width."""

CODE_ORDER: tuple[str, ...] = ("shape", "tex", "exp", "pose", "cam", "light")


@dataclass
class FlameCodes:
    """A batch of B faces' FLAME/DECA codes, as float32 tensors on one device."""

    shape: "torch.Tensor"  # (B, 100)
    tex: "torch.Tensor"  # (B, 50)
    exp: "torch.Tensor"  # (B, 50)
    pose: "torch.Tensor"  # (B, 6): [:3] global rotation, [3:] jaw (axis-angle)
    cam: "torch.Tensor"  # (B, 3): s, tx, ty
    light: "torch.Tensor"  # (B, 9, 3)

    def __post_init__(self) -> None:
        b = self.shape.shape[0]
        for name in CODE_ORDER:
            t = getattr(self, name)
            expect = (b, 9, 3) if name == "light" else (b, CODE_DIMS[name])
            if tuple(t.shape) != expect:
                raise ValueError(f"FlameCodes.{name} has shape {tuple(t.shape)}, expected {expect}")

    @property
    def batch_size(self) -> int:
        return int(self.shape.shape[0])

    def _map(self, fn) -> "FlameCodes":
        return FlameCodes(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device_or_dtype: "torch.device | str | torch.dtype") -> "FlameCodes":
        return self._map(lambda t: t.to(device_or_dtype))

    def clone(self) -> "FlameCodes":
        return self._map(lambda t: t.clone())

    def index(self, idx: "int | slice | Sequence[int] | torch.Tensor") -> "FlameCodes":
        """Select faces; an int keeps the batch dimension (B = 1)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return self._map(lambda t: t[idx])

    @classmethod
    def cat(cls, items: Iterable["FlameCodes"]) -> "FlameCodes":
        import torch  # lazy: see the note above FlameCodes

        items = list(items)
        return cls(**{f.name: torch.cat([getattr(c, f.name) for c in items], dim=0) for f in fields(cls)})

    @classmethod
    def from_flat(cls, flat: "torch.Tensor") -> "FlameCodes":
        """Split a (B, 236) DECA encoder output in DECA's parameter order."""
        if flat.ndim != 2 or flat.shape[1] != sum(CODE_DIMS.values()):
            raise ValueError(f"expected (B, 236) codes, got {tuple(flat.shape)}")
        parts, start = {}, 0
        for name in CODE_ORDER:
            parts[name] = flat[:, start : start + CODE_DIMS[name]]
            start += CODE_DIMS[name]
        parts["light"] = parts["light"].reshape(-1, 9, 3)
        return cls(**parts)

    def flat(self) -> "torch.Tensor":
        import torch  # lazy: see the note above FlameCodes

        return torch.cat([self.shape, self.tex, self.exp, self.pose, self.cam, self.light.reshape(-1, 27)], dim=1)

    def to_columns(self) -> dict[str, list[np.ndarray]]:
        """Per-face float32 arrays for Parquet list columns (light flattened row-major)."""
        out: dict[str, list[np.ndarray]] = {}
        for name in CODE_ORDER:
            arr = getattr(self, name).detach().to("cpu", dtype=__import__("torch").float32).numpy()
            out[name] = [row.reshape(-1).copy() for row in arr]
        return out

    @classmethod
    def from_frame(cls, df: "pd.DataFrame", device: "torch.device | str" = "cpu") -> tuple["FlameCodes", "torch.Tensor"]:
        """Codes and tform (B, 3, 3) from the ``ok`` rows of a codes.parquet frame (order kept)."""
        import torch  # lazy: see the note above FlameCodes

        if len(df) == 0:
            raise ValueError("no rows to read codes from")
        parts = {}
        for name in CODE_ORDER:
            if name not in df.columns:
                raise ValueError(f"codes table has no column {name!r}")
            arr = np.stack([np.asarray(v, dtype=np.float32) for v in df[name]])
            if arr.shape[1] != CODE_DIMS[name]:
                raise ValueError(f"column {name!r} has {arr.shape[1]} values per row, expected {CODE_DIMS[name]}")
            t = torch.from_numpy(arr).to(device)
            parts[name] = t.reshape(-1, 9, 3) if name == "light" else t
        tform = torch.from_numpy(np.stack([np.asarray(v, dtype=np.float32) for v in df["tform"]]).reshape(-1, 3, 3))
        return cls(**parts), tform.to(device)


@dataclass
class Buffers:
    """The three DiffusionRig physical buffers (+ coverage), each (B, C, H, W) float32, background 0."""

    rendered: "torch.Tensor"  # albedo · SH shading · alpha, unclamped
    normal: "torch.Tensor"  # interpolated world-space vertex normals · alpha, not re-normalised
    albedo: "torch.Tensor"  # UV albedo sampled at each pixel · alpha
    alpha: "torch.Tensor"  # (B, 1, H, W) rasterizer coverage (0/1)

    def condition(self) -> "torch.Tensor":
        """(B, 9, H, W) in the original channel order: rendered, normal, albedo."""
        import torch  # lazy: see the note above FlameCodes

        return torch.cat([self.rendered, self.normal, self.albedo], dim=1)
