"""Extractor: aligned photos + their 68 landmarks → DECA crops → DECA or EMOCA FLAME codes, batched.

The crop is DECA's (``dre.face3d.crop``) run on the accelerator for the whole batch; the encoders come
from the user's DECA/EMOCA files (``dre.face3d.encoders``). By default every aligned image first goes
through DiffusionRig's resize-and-truncate quantisation (``dre.face3d.crop._diffusionrig_lut``) so the encoder
sees the exact pixels the published buffers were made from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from dre.assets.catalog import DEFAULT_EMOCA_MODEL, EXTRACTORS, asset_checksums
from dre.errors import DreError
from dre.face3d.codes import FlameCodes
from dre.face3d.crop import CROP_SIZE, _diffusionrig_lut, crop_tforms, warp_crops
from dre.face3d.encoders import load_face_encoder
from dre.utils.synthetic import is_synthetic_assets


class Extractor:
    """DECA (``E_flame``) or EMOCA (``E_flame`` + ``E_expression``) on DECA crops."""

    def __init__(
        self,
        encoder: torch.nn.Module,
        kind: str,
        device: torch.device | str = "cpu",
        *,
        checksums: dict[str, str] | None = None,
        synthetic: bool = False,
        requantize: bool = True,
    ) -> None:
        if kind not in EXTRACTORS:
            raise DreError(f"unknown extractor {kind!r}: use {' or '.join(EXTRACTORS)}")
        self.device = torch.device(device)
        # NHWC convolutions are faster on both oneDNN (CPU, ~20 % here) and cuDNN
        self.encoder = encoder.to(self.device).eval().to(memory_format=torch.channels_last)
        self.kind = kind
        self.checksums: dict[str, str] = dict(checksums or {})
        self.synthetic = bool(synthetic)
        # uint8 level → float in [0, 1], with DiffusionRig's requantisation folded in when asked
        levels = _diffusionrig_lut() if requantize else np.arange(256)
        self._to_float = torch.from_numpy(levels.astype(np.float32) / 255.0).to(self.device)

    @classmethod
    def from_assets(
        cls, assets_dir: str | Path, kind: str, device: torch.device | str = "cpu", emoca_model: str | None = None
    ) -> "Extractor":
        """Load the ``kind`` encoder from an assets folder (checksums of every file it depends on kept)."""
        root = Path(assets_dir)
        if not root.is_dir():
            raise DreError(f"--assets {root} is not a folder (see `dre assets check --assets {root}`)")
        model = emoca_model or DEFAULT_EMOCA_MODEL
        encoder = load_face_encoder(str(root), kind, model)
        sums = asset_checksums(root, kind, model)
        return cls(encoder, kind, device, checksums=sums, synthetic=is_synthetic_assets(root))

    # ------------------------------------------------------------------------------------------- crop
    def crop(
        self, images_uint8_hwc: Sequence[np.ndarray], landmarks68: Sequence[np.ndarray]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DECA crops (B, 3, 224, 224) in [0, 1] and tforms (B, 3, 3) (aligned px → crop px), on the device.

        Images of different sizes are cropped in same-size groups; the output keeps the input order.
        """
        if len(images_uint8_hwc) != len(landmarks68):
            raise DreError(f"{len(images_uint8_hwc)} images but {len(landmarks68)} landmark sets")
        if not images_uint8_hwc:
            raise DreError("no images to crop")
        imgs = [_as_rgb_uint8(im, i) for i, im in enumerate(images_uint8_hwc)]
        lms = []
        for i, lm in enumerate(landmarks68):
            a = np.asarray(lm, dtype=np.float64)
            if a.size != 136 or not np.isfinite(a).all():
                raise DreError(f"landmarks of image {i} must be 68 finite (x, y) points, got shape {a.shape}")
            lms.append(a.reshape(68, 2))
        tforms = crop_tforms(torch.from_numpy(np.stack(lms)))
        crops = torch.empty(len(imgs), 3, CROP_SIZE, CROP_SIZE, device=self.device)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(imgs):
            groups.setdefault(im.shape, []).append(i)
        for idx in groups.values():
            raw = torch.from_numpy(np.stack([imgs[i] for i in idx])).to(self.device, non_blocking=True)
            batch = self._to_float.index_select(0, raw.reshape(-1).int()).view(raw.shape).permute(0, 3, 1, 2)
            crops[idx] = warp_crops(batch, tforms[idx].to(self.device), CROP_SIZE)
        return crops, tforms.to(device=self.device, dtype=torch.float32)

    # ----------------------------------------------------------------------------------------- encode
    def encode(self, crops: torch.Tensor) -> FlameCodes:
        """FLAME codes for (B, 3, 224, 224) crops in [0, 1] (any batch size; no gradients)."""
        if crops.ndim != 4 or crops.shape[1:] != (3, CROP_SIZE, CROP_SIZE):
            raise ValueError(f"crops must be (B, 3, {CROP_SIZE}, {CROP_SIZE}), got {tuple(crops.shape)}")
        x = crops.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.encoder(x)


def _as_rgb_uint8(im: np.ndarray, i: int) -> np.ndarray:
    a = np.asarray(im)
    if a.dtype != np.uint8:
        raise DreError(f"image {i} has dtype {a.dtype}; expected uint8 RGB")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise DreError(f"image {i} has shape {a.shape}; expected H×W×3 RGB")
    return np.ascontiguousarray(a[:, :, :3])
