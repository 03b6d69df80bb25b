"""One validator per asset file: what ``dre assets check``, ``fetch`` and ``add`` all call.

Why one place: a file ``fetch`` or ``add`` places must be exactly what ``check`` (and then extraction and
rendering) accepts, so all three run the same real loaders. The validators take the file's path and
whether official sizes are required, so ``add`` can validate a file while it is still in its staging
folder (which has no ``SYNTHETIC`` marker even when the assets folder has one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from dre.assets.catalog import (
    DECA_FILE,
    EMOCA_DIR,
    FAN4_FILE,
    FAN_DIR,
    FLAME_FILE,
    LANDMARK_FILE,
    S3FD_FILE,
    TEMPLATE_FILE,
    TEXTURE_FILE,
)
from dre.errors import DreError
from dre.face3d.encoder_files import load_deca_checkpoint, load_emoca, torch_load_weights
from dre.face3d.encoders import build_deca_encoder, build_emoca_encoder
from dre.face3d.face_model import load_head_template
from dre.face3d.flame import load_flame, load_landmark_embedding
from dre.face3d.texture import load_flame_texture


def fan_kind(state: Any) -> str | None:
    """Which face-alignment network a loaded state dict is for: ``S3FD_FILE``, ``FAN4_FILE`` or None.

    Probes on key names only (the networks' own layer names): S3FD has VGG-style ``conv1_1`` and the
    ``conv3_3_norm_mbox_conf`` head; 2D-FAN-4 has ``conv1``, hourglass ``m0.*`` and the fourth stack's ``l3``.
    """
    if not isinstance(state, dict):
        return None
    keys = [k for k in state if isinstance(k, str)]
    if "conv1_1.weight" in keys and any(k.startswith("conv3_3_norm_mbox_conf") for k in keys):
        return S3FD_FILE
    if "conv1.weight" in keys and "l3.weight" in keys and any(k.startswith("m0.") for k in keys):
        return FAN4_FILE
    return None


def validate_fan(path: Path, expected: str | None = None) -> str:
    """A face-alignment weight file: a readable torch state dict of S3FD or 2D-FAN-4; returns which."""
    state = torch_load_weights(path, FAN_DIR)
    kind = fan_kind(state)
    if kind is None:
        raise DreError(f"{path}: a torch file, but not face-alignment's S3FD or 2D-FAN-4 weights (unexpected keys)")
    if expected is not None and kind != expected:
        raise DreError(f"{path}: holds the weights of {kind}, not {expected}")
    return kind


def validate_deca(path: Path) -> None:
    """``deca_model.tar``: its E_flame builds DECA's encoder with strict keys and shapes."""
    build_deca_encoder(load_deca_checkpoint(path), f"{path} (E_flame)")


def validate_emoca(folder: Path) -> None:
    """An EMOCA model folder: cfg.yaml + best checkpoint build the EMOCA encoder."""
    em = load_emoca(folder)
    build_emoca_encoder(em.e_flame, em.e_expression, em.flags, str(em.checkpoint))


def file_validator(rel: str, official: bool) -> Callable[[Path], Any]:
    """The validator of the asset at relative path ``rel`` (a file of the layout or an EMOCA model folder)."""
    if rel.startswith(EMOCA_DIR + "/"):
        return validate_emoca
    table: dict[str, Callable[[Path], Any]] = {
        FLAME_FILE: lambda p: load_flame(p, official=official),
        TEXTURE_FILE: lambda p: load_flame_texture(p, official=official),
        TEMPLATE_FILE: lambda p: load_head_template(p, official=official),
        LANDMARK_FILE: load_landmark_embedding,
        DECA_FILE: validate_deca,
        f"{FAN_DIR}/{S3FD_FILE}": lambda p: validate_fan(p, S3FD_FILE),
        f"{FAN_DIR}/{FAN4_FILE}": lambda p: validate_fan(p, FAN4_FILE),
    }
    return table[rel]


def problem(validate: Callable[[Path], Any], path: Path) -> str | None:
    """The first problem ``validate`` finds in ``path`` (None when valid), without the 'get it' tail."""
    try:
        validate(path)
    except DreError as exc:
        return str(exc).split(". Expected the file from:")[0].split(". Get it:")[0]
    return None
