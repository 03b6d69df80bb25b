"""DiffusionRig network: UNet, global latent encoder, wrapper, model files, speed switches."""

from __future__ import annotations

from dre.utils.lazy import lazy_exports

_EXPORTS = {
    "DiffusionRig": "rig",
    "ModelConfig": "arch",
    "Precision": "precision",
    "eps_fn": "fast",
    "infer_official_config": "modelfile",
    "load_model_file": "modelfile",
    "maybe_compile": "fast",
    "resolve_precision": "precision",
    "save_model_file": "modelfile",
    "to_channels_last": "fast",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)  # torch-heavy modules load on first use
