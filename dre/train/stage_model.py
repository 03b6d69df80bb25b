"""What each training stage trains: the model built from the flags, stage 2's start from a stage-1 file,
the parameters that learn and the modules left in eval mode.

Stage 1 trains the UNet and the global encoder from a seeded initialisation. Stage 2 starts from a
stage-1 model file (ours or an official DiffusionRig ``model*.pt``), freezes the encoder and fine-tunes
the whole UNet, as the original does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dre.diffusion import GaussianDiffusion
from dre.errors import DreError
from dre.model import DiffusionRig
from dre.model.modelfile import load_model_file
from dre.train.config import TrainConfig
from dre.train.shards import derive_seed

log = logging.getLogger(__name__)


def build_model(cfg: TrainConfig) -> tuple[nn.Module, GaussianDiffusion]:
    """(model, diffusion) from the flags (``cfg.model``, ``cfg.diffusion``), seeded for identical init."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        model = DiffusionRig(cfg.model)
    return model, GaussianDiffusion(cfg.diffusion)


def load_init(model: nn.Module, cfg: TrainConfig) -> dict[str, Any]:
    """Stage 2: copy the weights of a stage-1 model file (ours or an official ``model*.pt``) into ``model``.

    The architecture comes from the flags; a file of another architecture is an error naming the
    differing settings. Files with an EMA initialise from the EMA weights (the better model).
    """
    path, model_cfg = str(cfg.init), cfg.model
    p = Path(path)
    if not p.is_file():
        raise DreError(f"--init {path}: no such model file")
    loaded, meta = load_model_file(p, map_location="cpu", weights="auto", model_config=model_cfg)
    theirs = getattr(loaded, "cfg", None)
    if theirs is not None:
        a, b = theirs.to_dict(), model_cfg.to_dict()
        diffs = [f"{k}: file {a[k]!r} vs flags {b.get(k)!r}" for k in a if a[k] != b.get(k)
                 and not (k == "channel_mult" and tuple(theirs.resolved_channel_mult()) == tuple(model_cfg.resolved_channel_mult()))]
        if diffs:
            raise DreError(
                f"--init {path} was trained with another architecture ({'; '.join(diffs)}); pass the "
                "architecture flags (--image-size, --model-channels, --channel-mult, --latent-dim, --encoder, ...) "
                "it was trained with"
            )
    dc = meta.get("diffusion_config")  # a DiffusionConfig (load_model_file), for ours and official files alike
    if dc is not None and not meta.get("official"):
        theirs, mine = dc.to_dict(), cfg.diffusion.to_dict()
        bad = [f"{k}: file {theirs[k]!r} vs flags {mine[k]!r}" for k in ("steps", "schedule") if theirs[k] != mine[k]]
        if bad:
            raise DreError(f"--init {path} was trained with another noise schedule ({'; '.join(bad)}); pass "
                           "--diffusion-steps/--noise-schedule as in stage 1")
    model.load_state_dict(loaded.state_dict(), strict=True)
    log.info("initialised from %s (%s weights%s)", path, meta.get("weights", "raw"),
             ", official DiffusionRig checkpoint" if meta.get("official") else "")
    return meta


def trainable_params(cfg: TrainConfig, model: nn.Module) -> list[nn.Parameter]:
    """Stage 1 trains everything; stage 2 only the UNet (requires_grad set accordingly)."""
    if cfg.stage == 1:
        for p in model.parameters():
            p.requires_grad_(True)
        return list(model.parameters())
    # stage 2: the global encoder is frozen; the whole UNet (FiLM layers included) is fine-tuned
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("denoisingUNet."))
    return [p for p in model.parameters() if p.requires_grad]


def set_train_modes(cfg: TrainConfig, model: nn.Module) -> None:
    """Training mode, except the frozen stage-2 encoder (eval unless --train-encoder-bn)."""
    model.train()
    if cfg.stage == 2 and not cfg.train_encoder_bn:
        model.encoder.eval()
