"""Model files: ours (``dre-model/1``) and the official DiffusionRig ``model*.pt`` state dicts.

Ours is one ``torch.save`` of plain types and tensors (see docs/ARCHITECTURE.md "Model file"), so it
loads with ``torch.load(weights_only=True)`` and carries everything needed to rebuild the network.
An official checkpoint is a bare state dict with ``denoisingUNet.*`` / ``encoder.*`` keys and no
configuration: the architecture is read off the tensor shapes (the only thing that cannot be read
is the number of attention heads, which the published model fixes at 1) and the weights are loaded
strictly, so any missing or unexpected key is an error rather than a silently random layer.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from dre.diffusion.config import DiffusionConfig
from dre.errors import DreError
from dre.model.arch import DEFAULT_CHANNEL_MULT, ModelConfig
from dre.model.rig import DiffusionRig
from dre.safety.atomic import atomic_path

FORMAT = "dre-model/1"
_UNET = "denoisingUNet."


def _plain_state(model_or_state: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CPU, contiguous copies of a state dict (portable files whatever device/memory format trained)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return {k.replace("_orig_mod.", ""): v.detach().to("cpu").contiguous() for k, v in state.items()}


_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Refuse values ``torch.load(weights_only=True)`` would reject later (numpy arrays, Paths, ...):
    better a clear error when saving than an unreadable model file after a long training run."""
    if type(value) in _PLAIN or isinstance(value, Tensor):  # exact types: np.float64 is a float subclass
        return
    if type(value) in (list, tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if type(value) is dict:
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"model file {where}: key {k!r} is not a string")
            _check_plain(v, f"{where}.{k}")
        return
    raise TypeError(f"model file {where} is a {type(value).__name__}; store plain types (str, int, float, bool, "
                    "None, lists, dicts) or tensors")


def save_model_file(
    path: str | os.PathLike[str],
    model: nn.Module,
    model_cfg: ModelConfig,
    diffusion_cfg: DiffusionConfig,
    meta: dict[str, Any],
    ema_state: Mapping[str, Tensor] | None = None,
) -> None:
    """Write a ``dre-model/1`` file atomically (a killed job never leaves a half-written model)."""
    payload = {
        "format": FORMAT,
        "model_config": model_cfg.to_dict(),
        "diffusion_config": diffusion_cfg.to_dict(),
        "state_dict": _plain_state(model),
        "ema_state_dict": _plain_state(ema_state) if ema_state is not None else None,
        "meta": dict(meta),
    }
    _check_plain(payload["meta"], "meta")
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _torch_load(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise DreError(f"model file {path} does not exist") from None
    except Exception as exc:  # unpickling errors, truncated files, foreign formats
        raise DreError(
            f"cannot read model file {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            "(expected a dre model file or an official DiffusionRig model*.pt state dict; arbitrary pickles "
            "are refused for safety)"
        ) from exc


def _strip_prefix(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def infer_official_config(state: Mapping[str, Tensor]) -> ModelConfig:
    """Rebuild the ``ModelConfig`` of an official state dict from its key layout and tensor shapes.

    Number of levels and res-blocks come from where the up-sampling blocks sit in the decoder,
    channel multipliers from each level's first res-block, attention levels from the ``qkv`` weights,
    the image size from the original's per-size ``channel_mult`` table (attention at 16² otherwise).
    """
    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise DreError(f"official checkpoint lacks {key!r}: not a DiffusionRig model state dict")
        return tuple(state[key].shape)

    mc = shape(_UNET + "time_embed.0.weight")[1]
    in_ch = shape(_UNET + "input_blocks.0.0.weight")[1]
    out_ch = shape(_UNET + "out.2.weight")[0]
    latent_dim = shape(_UNET + "input_blocks.1.0.cond_emb_layers.1.weight")[1]

    def count(prefix: str) -> int:
        pat = re.compile(re.escape(_UNET + prefix) + r"\.(\d+)\.")
        idx = {int(m.group(1)) for k in state if (m := pat.match(k))}
        return max(idx) + 1 if idx else 0

    n_out = count("output_blocks")

    def is_resblock(block: str, layer: int) -> bool:
        return f"{_UNET}{block}.{layer}.in_layers.0.weight" in state

    # the first decoder block holding a second res-block (the ×2 up-sampler) closes the first level; a
    # single-level network has no up-sampler (its n_out = nrb + 1 blocks are all plain)
    ups = (k for k in range(n_out) if is_resblock(f"output_blocks.{k}", 1) or is_resblock(f"output_blocks.{k}", 2))
    nrb = next(ups, n_out - 1)
    levels = n_out // (nrb + 1)
    if levels * (nrb + 1) != n_out or nrb < 1:
        raise DreError("official checkpoint: decoder block layout does not match a DiffusionRig UNet")
    mult: list[float] = []
    attn_levels: list[int] = []
    for level in range(levels):
        first = 1 + level * (nrb + 1)
        c = shape(f"{_UNET}input_blocks.{first}.0.in_layers.2.weight")[0]
        m = c / mc
        mult.append(int(m) if float(m).is_integer() else m)
        if f"{_UNET}input_blocks.{first}.1.qkv.weight" in state:
            attn_levels.append(level)
    image_size = next((s for s, cm in DEFAULT_CHANNEL_MULT.items() if tuple(cm) == tuple(mult)), None)
    if image_size is None:
        if not attn_levels:
            raise DreError("official checkpoint: cannot infer the image size (unknown channel_mult, no attention)")
        image_size = 16 * 2 ** attn_levels[0]
    attn_res = tuple(sorted({image_size // 2**lv for lv in attn_levels}, reverse=True))
    fc = shape("encoder.fc.weight")
    if fc[1] == 512 and "encoder.layer1.0.conv3.weight" not in state:
        encoder = "resnet18"
    elif fc[1] == 2048:
        encoder = "resnet50"
    else:
        raise DreError(f"official checkpoint: encoder.fc has {fc[1]} inputs; expected ResNet-18 (512) or ResNet-50 (2048)")
    default_mult = DEFAULT_CHANNEL_MULT.get(image_size)
    return ModelConfig(
        image_size=image_size,
        in_channels=in_ch,
        out_channels=out_ch,
        model_channels=mc,
        channel_mult=() if default_mult is not None and tuple(default_mult) == tuple(mult) else tuple(mult),
        num_res_blocks=nrb,
        attention_resolutions=attn_res,
        latent_dim=latent_dim,
        encoder=encoder,
    )


def _load_strict(model: nn.Module, state: Mapping[str, Tensor], path: Path, what: str) -> None:
    result = model.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise DreError(
            f"{what} in {path} does not fit the model it describes: {len(missing)} missing keys "
            f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}"
        )


def load_model_file(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    weights: str = "auto",
    model_config: ModelConfig | None = None,
) -> tuple[DiffusionRig, dict[str, Any]]:
    """Load a model file (ours or official) → ``(model, meta)``; the model is in eval mode.

    ``weights``: ``auto`` (EMA when the file has it, else raw), ``raw`` or ``ema``. ``model_config``
    overrides the architecture inferred for an official checkpoint (ignored for ours).
    ``meta`` is the file's ``meta`` plus ``format``, ``model_config`` (:class:`ModelConfig`),
    ``diffusion_config`` (:class:`DiffusionConfig`), ``weights`` (which set was loaded) and
    ``official`` (bool).
    """
    path = Path(path)
    if weights not in ("auto", "raw", "ema"):
        raise DreError(f"weights must be auto, raw or ema, got {weights!r}")
    obj = _torch_load(path, map_location)
    if isinstance(obj, Mapping) and "format" in obj:
        if obj["format"] != FORMAT:
            raise DreError(f"{path} has format {obj['format']!r}; this dre reads {FORMAT!r}")
        cfg = ModelConfig.from_dict(dict(obj["model_config"]))
        dcfg = DiffusionConfig.from_dict(dict(obj["diffusion_config"]))
        ema = obj.get("ema_state_dict")
        if weights == "ema" and ema is None:
            raise DreError(f"{path} has no EMA weights (trained with --ema 0); use weights='raw'")
        use_ema = ema is not None and weights in ("auto", "ema")
        state = ema if use_ema else obj["state_dict"]
        model = DiffusionRig(cfg)
        _load_strict(model, state, path, "EMA state dict" if use_ema else "state dict")
        meta = dict(obj.get("meta") or {})
        meta.update(format=FORMAT, official=False, weights="ema" if use_ema else "raw")
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        state = _strip_prefix(obj, "module.")  # DDP-wrapped saves
        if not any(k.startswith(_UNET) for k in state):
            raise DreError(f"{path} is a state dict without {_UNET}* keys: not a DiffusionRig model")
        cfg = model_config or infer_official_config(state)
        dcfg = DiffusionConfig()
        model = DiffusionRig(cfg)
        _load_strict(model, state, path, "official state dict")
        m = re.search(r"model(\d+)\.pt$", path.name)
        meta = {
            "stage": None,
            "extractor": "deca",
            "lmdbs": [],
            "mean_shape": None,
            "synthetic": False,
            "step": int(m.group(1)) if m else None,
            "format": "diffusionrig-official",
            "official": True,
            "weights": "raw",
        }
    else:
        raise DreError(f"{path} is neither a dre model file (format {FORMAT}) nor an official DiffusionRig state dict")
    meta["model_config"] = cfg
    meta["diffusion_config"] = dcfg
    model.to(map_location)
    model.eval()
    return model, meta
