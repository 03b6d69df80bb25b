"""DiffusionRig network: UNet, global latent encoder, wrapper, model files, speed switches."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "AttentionBlock": "dre.model.unet",
    "DEFAULT_CHANNEL_MULT": "dre.model.arch",
    "DiffusionRig": "dre.model.rig",
    "FORMAT": "dre.model.modelfile",
    "ModelConfig": "dre.model.arch",
    "PRECISIONS": "dre.model.arch",
    "Precision": "dre.model.precision",
    "ResBlock": "dre.model.unet",
    "UNet": "dre.model.unet",
    "build_encoder": "dre.model.encoder",
    "eps_fn": "dre.model.fast",
    "infer_official_config": "dre.model.modelfile",
    "load_model_file": "dre.model.modelfile",
    "maybe_compile": "dre.model.fast",
    "resolve_precision": "dre.model.precision",
    "save_model_file": "dre.model.modelfile",
    "to_channels_last": "dre.model.fast",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the submodule behind ``name`` on first use (PEP 562): importing a light submodule of this
    package (its config) must not pull in torch, so ``dre train --help`` stays quick."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
