"""The DiffusionRig model: denoising UNet + global latent encoder under the official attribute names."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dre.model.arch import ModelConfig
from dre.model.encoder import build_encoder
from dre.model.unet import UNet


class DiffusionRig(nn.Module):
    """``denoisingUNet`` and ``encoder`` are the attribute names of the published model, so its state
    dict keys (``denoisingUNet.*``, ``encoder.*``) load into this module unchanged."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg  # validated when it was built (ModelConfig.__post_init__)
        self.denoisingUNet = UNet(cfg)
        self.encoder = build_encoder(cfg.encoder, cfg.latent_dim)

    def encode(self, x0: Tensor) -> Tensor:
        """Global latent z (B, latent_dim), fp32, of clean images ``x0`` in [-1, 1] (B,3,H,W)."""
        if self.denoisingUNet.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        return self.encoder(x0).float()

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        cond: Tensor,
        latent: Tensor | None = None,
        x_start: Tensor | None = None,
    ) -> Tensor:
        """ε̂ (B,3,H,W) fp32 for noisy ``x_t`` at original timesteps ``t`` with buffers ``cond`` (B,9,H,W).

        The latent comes from ``latent`` when given (editing: the source's or target's z), else from
        encoding ``x_start`` (training: the very image being denoised, as the original does).
        """
        if latent is None:
            if x_start is None:
                raise ValueError("DiffusionRig.forward needs either latent or x_start")
            latent = self.encode(x_start)
        return self.denoisingUNet(x_t, t, cond, latent).float()
