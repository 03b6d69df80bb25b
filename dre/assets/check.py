"""``dre assets check``: every asset of a folder validated through the loader that really reads it.

Why through the real loaders: "valid" must mean "extraction and rendering will accept it", so each row
runs the same function the pipeline runs (FLAME through the FLAME layer's loader, DECA/EMOCA by
building the encoder; :mod:`dre.assets.validate`, which ``dre assets fetch`` and ``add`` call too), and
reports the first problem together with where the right file is obtained.
Cross-checks: the head template must have FLAME's faces, the landmark embedding must index them.
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
    FAN_DIR,
    FAN_FILES,
    FLAME_FILE,
    LANDMARK_FILE,
    TEMPLATE_FILE,
    TEXTURE_FILE,
    emoca_path,
    where_to_get,
)
from dre.assets.validate import problem, validate_deca, validate_emoca, validate_fan
from dre.errors import DreError
from dre.face3d.face_model import load_head_template
from dre.face3d.flame import FlameModel, load_flame, load_landmark_embedding
from dre.face3d.texture import load_flame_texture


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
