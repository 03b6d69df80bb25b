"""Asset validation through the loaders that really read each file: ``dre assets check`` and the per-file
validators ``dre assets fetch`` and ``add`` call.

Why through the real loaders, and one place: "valid" must mean "extraction and rendering will accept
it", and a file ``fetch`` or ``add`` places must be exactly what ``check`` accepts, so all three run the
same function the pipeline runs (FLAME through the FLAME layer's loader, DECA/EMOCA by building the
encoder). The per-file validators take the file's path and whether official sizes are required, so
``add`` can validate a file while it is still in its staging folder (which has no ``SYNTHETIC`` marker
even when the assets folder has one). Each row of the table reports the first problem together with
where the right file is obtained. Cross-checks: the head template must have FLAME's faces, the landmark
embedding must index them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from dre.assets.catalog import (
    DECA_FILE,
    DEFAULT_EMOCA_MODEL,
    EMOCA_DIR,
    FAN4_FILE,
    FAN_DIR,
    FAN_FILES,
    FLAME_FILE,
    LANDMARK_FILE,
    S3FD_FILE,
    TEMPLATE_FILE,
    TEXTURE_FILE,
    emoca_path,
    where_to_get,
)
from dre.errors import DreError
from dre.face3d.encoder_files import torch_load_weights
from dre.face3d.encoders import deca_encoder_from_file, emoca_encoder_from_folder
from dre.face3d.face_model import load_head_template
from dre.face3d.flame import FlameModel, load_flame, load_landmark_embedding
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


def validate_fan(path: Path, expected: str) -> None:
    """A face-alignment weight file: a readable torch state dict of ``expected`` (S3FD or 2D-FAN-4)."""
    kind = fan_kind(torch_load_weights(path, FAN_DIR))
    if kind is None:
        raise DreError(f"{path}: a torch file, but not face-alignment's S3FD or 2D-FAN-4 weights (unexpected keys)")
    if kind != expected:
        raise DreError(f"{path}: holds the weights of {kind}, not {expected}")


validate_deca = deca_encoder_from_file  # deca_model.tar is valid when its E_flame builds DECA's encoder
validate_emoca = emoca_encoder_from_folder  # an EMOCA folder is valid when it builds EMOCA's encoder


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


@dataclass
class AssetStatus:
    """One row of ``dre assets check``."""

    name: str
    path: Path
    found: bool
    valid: bool
    problem: str
    source: str
    required: bool

    @property
    def ok(self) -> bool:
        return self.found and self.valid


def _status(name: str, path: Path, required: bool, validate: Callable[[Path], Any], source: str = "") -> AssetStatus:
    """The row of ``path``; ``source`` defaults to where the file ``name`` is obtained."""
    source = source or where_to_get(name)
    if not path.exists():
        return AssetStatus(name, path, False, False, "missing", source, required)
    why = problem(validate, path)
    return AssetStatus(name, path, True, why is None, why or "", source, required)


def check_assets(
    assets_dir: str | Path,
    require: Iterable[str] = ("deca", "emoca"),
    emoca_model: str = DEFAULT_EMOCA_MODEL,
) -> list[AssetStatus]:
    """Validate every asset; FLAME, texture, template and landmarks are always required, DECA/EMOCA/FAN
    when named in ``require``. Cross-checks template faces == FLAME faces and landmark face indices."""
    root = Path(assets_dir)
    require = {r.strip().lower() for r in require if r.strip()}
    unknown = require - {"deca", "emoca", "fan"}
    if unknown:
        raise DreError(f"--require: unknown item(s) {sorted(unknown)}; use deca, emoca, fan")
    flame_box: dict[str, FlameModel] = {}

    def v_flame(path: Path) -> None:
        flame_box["m"] = load_flame(path)

    def v_template(path: Path) -> None:
        t = load_head_template(path)
        m = flame_box.get("m")
        if m is not None and not (t.faces.shape == m.faces.shape and np.array_equal(t.faces, m.faces)):
            raise DreError(f"{path}: its faces differ from generic_model.pkl's (not the same topology)")

    def v_landmarks(path: Path) -> None:
        m = flame_box.get("m")
        load_landmark_embedding(path, n_faces=None if m is None else len(m.faces))

    def v_fan(folder: Path) -> None:
        for f in FAN_FILES:
            p = folder / f
            if not p.is_file():
                raise DreError(f"{p} missing")
            validate_fan(p, expected=f)

    return [  # in this order: the template and landmark rows cross-check against the FLAME row's model
        _status(FLAME_FILE, root / FLAME_FILE, True, v_flame),
        _status(TEXTURE_FILE, root / TEXTURE_FILE, True, load_flame_texture),
        _status(TEMPLATE_FILE, root / TEMPLATE_FILE, True, v_template),
        _status(LANDMARK_FILE, root / LANDMARK_FILE, True, v_landmarks),
        _status(DECA_FILE, root / DECA_FILE, "deca" in require, validate_deca),
        _status(f"{EMOCA_DIR}/{emoca_model}", emoca_path(root, emoca_model), "emoca" in require, validate_emoca,
                where_to_get(EMOCA_DIR, emoca_model)),
        _status(FAN_DIR, root / FAN_DIR, "fan" in require, v_fan),
    ]


def format_table(rows: list[AssetStatus]) -> str:
    """Plain-text table: file, required, found, valid, problem, where to get it (only when not ok)."""
    head = ("file", "required", "found", "valid", "problem", "where to get it")
    body = [
        (
            r.name, "yes" if r.required else "no", "yes" if r.found else "NO", "yes" if r.valid else ("NO" if r.found else "-"),
            r.problem or "-", "" if r.ok else r.source,
        )
        for r in rows
    ]
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) for i in range(5)]
    lines = []
    for row in (head, *body):
        cells = [row[i].ljust(widths[i]) for i in range(5)] + [row[5]]
        lines.append("  ".join(cells).rstrip())
    return os.linesep.join(lines)
