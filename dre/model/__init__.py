"""DiffusionRig network: UNet, global latent encoder, wrapper, model files, speed switches."""

from __future__ import annotations

from dre.model.modelfile import FORMAT, infer_official_config, load_model_file, save_model_file
from dre.model.arch import DEFAULT_CHANNEL_MULT, ModelConfig
from dre.model.encoder import build_encoder
from dre.model.fast import eps_fn, maybe_compile, to_channels_last
from dre.model.precision import PRECISIONS, Precision, resolve_precision
from dre.model.rig import DiffusionRig
from dre.model.unet import AttentionBlock, ResBlock, UNet

__all__ = [
    "DEFAULT_CHANNEL_MULT",
    "FORMAT",
    "PRECISIONS",
    "AttentionBlock",
    "DiffusionRig",
    "ModelConfig",
    "Precision",
    "ResBlock",
    "UNet",
    "build_encoder",
    "eps_fn",
    "infer_official_config",
    "load_model_file",
    "maybe_compile",
    "resolve_precision",
    "save_model_file",
    "to_channels_last",
]
