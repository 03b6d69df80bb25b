"""The files DECA's and EMOCA's encoders are loaded from: ``deca_model.tar`` and an EMOCA model folder.

Why these loaders sit apart from :mod:`dre.face3d.encoders`: they read and sanity-check *files*
(HTML pages saved in place of a download, truncated archives, a Lightning checkpoint full of foreign
classes, an EMOCA ``cfg.yaml`` that does not belong to its checkpoint) and return plain state dicts.
The strict key/shape check of those state dicts against the network happens once, where the network
is built (:func:`dre.face3d.encoders.load_encoder`), so this module does not import the encoders.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from dre.assets.catalog import DECA_FILE, EMOCA_DIR, expect, locate_emoca_checkpoint, require_file, where_to_get
from dre.errors import DreError
from dre.safety.unpickle import inert_class


@dataclass(frozen=True)
class EmocaFlags:
    """What EMOCA's expression encoder predicts besides the 50 expression coefficients.

    EMOCA (``ExpDECA``) appends 3 global-pose and/or 3 jaw-pose values after the expression
    coefficients when ``exp_deca_global_pose`` / ``exp_deca_jaw_pose`` are set in its ``cfg.yaml``;
    those then replace DECA's values. Order inside the extra block: global, then jaw.
    """

    n_exp: int = 50
    global_pose: bool = False
    jaw_pose: bool = False

    @property
    def out_size(self) -> int:
        return self.n_exp + 3 * int(self.global_pose) + 3 * int(self.jaw_pose)


def _sniff_torch_file(path: Path, key: str) -> None:
    """Refuse HTML pages and other non-torch files with a message that says what happened."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    low = head.lstrip().lower()
    if low.startswith(b"<") or b"<html" in low or b"<!doctype" in low:
        raise DreError(
            f"{path} is an HTML page, not the model: a failed download (typically Google Drive's "
            f"'cannot scan for viruses' page) was saved in its place. Download the file manually in a "
            f"browser and replace it. Get it: {where_to_get(key)}"
        )
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or (len(head) > 262 and head[257:262] == b"ustar")):
        raise DreError(
            f"{path}: not a torch.save file (starts with {head[:8]!r}); the download may be truncated or "
            f"corrupted. Get it: {where_to_get(key)}"
        )


def torch_load_weights(path: Path, key: str) -> Any:
    """``torch.load(weights_only=True)`` on CPU; foreign classes (e.g. OmegaConf hyper-parameters in a
    Lightning checkpoint) are loaded as inert stubs instead of being imported or executed."""
    _sniff_torch_file(path, key)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:
            names = []
        if not names:
            raise DreError(f"{path}: cannot be read as a torch checkpoint ({str(first).splitlines()[0]})") from first
        stubs = [(inert_class(n), n) for n in names]
        try:
            with torch.serialization.safe_globals(stubs):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DreError(f"{path}: cannot be read as a torch checkpoint ({str(exc).splitlines()[0]})") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise DreError(
            f"{path}: cannot be read as a torch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"the download may be truncated. Get it: {where_to_get(key)}"
        ) from exc


def load_deca_checkpoint(path: str | Path) -> dict[str, Any]:
    """The ``E_flame`` state dict of DECA's ``deca_model.tar`` (keys and shapes are checked where the
    encoder is built: :func:`dre.face3d.encoders.load_encoder`)."""
    path = Path(path)
    require_file(path, DECA_FILE, "DECA trained model")
    ckpt = torch_load_weights(path, DECA_FILE)
    expect(
        isinstance(ckpt, dict) and "E_flame" in ckpt, path, DECA_FILE,
        f"has no 'E_flame' entry (top-level keys: {sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__})",
    )
    return ckpt["E_flame"]


@dataclass
class EmocaModel:
    """What extraction needs from an EMOCA model folder (both encoders, prefixes stripped)."""

    checkpoint: Path
    flags: EmocaFlags
    e_flame: dict[str, Any] = field(repr=False)
    e_expression: dict[str, Any] = field(repr=False)


def read_emoca_flags(cfg_path: Path) -> EmocaFlags:
    """EMOCA's pose flags from ``cfg.yaml`` (``detail.model``, else ``coarse.model``, else ``model``)."""
    require_file(cfg_path, EMOCA_DIR, "EMOCA model configuration")
    try:
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DreError(f"{cfg_path}: not readable YAML ({exc})") from exc
    places = [cfg.get("detail"), cfg.get("coarse"), cfg] if isinstance(cfg, dict) else []
    model = next((p["model"] for p in places if isinstance(p, dict) and isinstance(p.get("model"), dict)), None)
    if model is None:
        raise DreError(f"{cfg_path}: has no detail.model / coarse.model section; is this an EMOCA cfg.yaml?")
    deca_class = model.get("deca_class", "ExpDECA")
    if deca_class not in ("ExpDECA", "EMOCA"):
        raise DreError(f"{cfg_path}: deca_class is {deca_class!r}; only EMOCA (ExpDECA) models have an expression encoder")
    backbone = model.get("expression_backbone", "deca_clone")
    if backbone != "deca_clone":
        raise DreError(f"{cfg_path}: expression_backbone {backbone!r} is not supported (released EMOCA models use deca_clone)")
    n_exp = int(model.get("n_exp", 50))
    if n_exp != 50:
        raise DreError(f"{cfg_path}: n_exp is {n_exp}; DiffusionRig codes use 50 expression coefficients")
    return EmocaFlags(
        n_exp=n_exp,
        global_pose=bool(model.get("exp_deca_global_pose", False)),
        jaw_pose=bool(model.get("exp_deca_jaw_pose", False)),
    )


def _strip(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def load_emoca(folder: str | Path) -> EmocaModel:
    """Load an EMOCA model folder: flags from ``cfg.yaml``, both encoders from the best checkpoint.

    The expression head's output rows (``deca.E_expression.layers.2.weight``: 50 / 53 / 56) must agree
    with the flags, so a config/checkpoint mix-up cannot silently shift pose values into ``exp``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DreError(f"{folder} not found (EMOCA model folder). Get it: {where_to_get(EMOCA_DIR, folder.name)}")
    flags = read_emoca_flags(folder / "cfg.yaml")
    ckpt_path = locate_emoca_checkpoint(folder)
    ckpt = torch_load_weights(ckpt_path, EMOCA_DIR)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise DreError(f"{ckpt_path}: not a Lightning checkpoint (no 'state_dict')")
    e_flame = _strip(state, "deca.E_flame.")
    e_exp = _strip(state, "deca.E_expression.")
    if not e_flame or not e_exp:
        raise DreError(
            f"{ckpt_path}: has no deca.E_flame.* / deca.E_expression.* weights; is this an EMOCA (ExpDECA) checkpoint?"
        )
    head = e_exp.get("layers.2.weight")
    rows = int(head.shape[0]) if head is not None and hasattr(head, "shape") else -1
    if rows != flags.out_size:
        raise DreError(
            f"{ckpt_path}: the expression head has {rows} outputs, but {folder / 'cfg.yaml'} "
            f"(exp_deca_global_pose={flags.global_pose}, exp_deca_jaw_pose={flags.jaw_pose}) implies "
            f"{flags.out_size} (50 + 3 per pose flag); the config and checkpoint do not belong together"
        )
    return EmocaModel(checkpoint=ckpt_path, flags=flags, e_flame=e_flame, e_expression=e_exp)
