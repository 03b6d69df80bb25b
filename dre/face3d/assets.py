"""Loaders and validators for the licensed files a user supplies (FLAME, FLAME texture space, DECA's
template and landmark embedding, DECA and EMOCA checkpoints).

Why a module of its own: these files come from registration-gated sites, are never in the repository,
and fail in confusing ways (chumpy pickles, an HTML page saved instead of ``deca_model.tar``, an EMOCA
folder with several checkpoints). Every loader validates shapes/keys and raises
:class:`~dre.errors.DreError` naming the file, what is wrong and where to obtain it. Pickles go through
:mod:`dre.safety.unpickle`; torch files through ``torch.load(weights_only=True)``.

Layout of an assets folder (``dre assets check --assets DIR`` prints this as a table)::

    generic_model.pkl          FLAME 2020
    FLAME_texture.npz          FLAME texture space (albedo)
    head_template.obj          DECA data/: faces + UVs
    landmark_embedding.npy     DECA data/: 68-landmark embedding
    deca_model.tar             DECA release (a torch.save file)
    emoca/<MODEL>/cfg.yaml     EMOCA model folder (+ detail/checkpoints/**/*.ckpt)

``official`` arguments: ``None`` (default) means "official FLAME 2020 sizes are required unless the
file's folder holds the ``SYNTHETIC`` marker"; synthetic assets (``dre assets synth``) keep FLAME's
structure with fewer vertices and a smaller texture.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from dre.errors import DreError
from dre.utils.synthetic import is_synthetic_assets

FLAME_FILE = "generic_model.pkl"
TEXTURE_FILE = "FLAME_texture.npz"
TEMPLATE_FILE = "head_template.obj"
LANDMARK_FILE = "landmark_embedding.npy"
DECA_FILE = "deca_model.tar"
EMOCA_DIR = "emoca"
DEFAULT_EMOCA_MODEL = "EMOCA_v2_lr_mse_20"
FAN_DIR = "torch/hub/checkpoints"
FAN_FILES = ("s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar")

SOURCES: dict[str, str] = {
    FLAME_FILE: (
        "register at https://flame.is.tue.mpg.de, download 'FLAME 2020' (FLAME2020.zip) and copy "
        "generic_model.pkl from it (FLAME 2023 bases are not compatible with DECA/EMOCA codes)"
    ),
    TEXTURE_FILE: (
        "register at https://flame.is.tue.mpg.de, download 'FLAME texture space' (FLAME_texture.npz)"
    ),
    TEMPLATE_FILE: "DECA repository data folder: https://github.com/yfeng95/DECA/tree/master/data (head_template.obj)",
    LANDMARK_FILE: (
        "DECA repository data folder: https://github.com/yfeng95/DECA/tree/master/data (landmark_embedding.npy)"
    ),
    DECA_FILE: (
        "DECA README 'DECA trained model': https://drive.google.com/file/d/1rp8kdyLPvErw2dTmqtjISRVvQLj6Yzje "
        "(save as deca_model.tar; it is a torch.save file, do not untar it)"
    ),
    EMOCA_DIR: (
        "register at https://emoca.is.tue.mpg.de, then download and unzip "
        "https://download.is.tue.mpg.de/emoca/assets/EMOCA/models/{model}.zip into <assets>/emoca/ "
        "(the folder holds cfg.yaml and detail/checkpoints/)"
    ),
    FAN_DIR: (
        "face-alignment 1.5 weights: https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth and "
        "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar into <assets>/torch/hub/checkpoints/"
    ),
}

# FLAME 2020 / DECA release sizes (reference deca_emoca.md §1).
N_VERTICES = 5023
N_FACES = 9976
N_JOINTS = 5
N_SHAPEDIRS = 400
N_SHAPE_PCS = 300  # shapedirs[..., :300] identity, [..., 300:] expression
N_POSEDIRS = 36
TEXTURE_SIZE = 512
TEXTURE_PCS = 200


def where_to_get(key: str, model: str = DEFAULT_EMOCA_MODEL) -> str:
    return SOURCES[key].format(model=model)


def _official(path: Path, official: bool | None) -> bool:
    return (not is_synthetic_assets(path.parent)) if official is None else official


def _require_file(path: Path, key: str, what: str) -> None:
    if not path.is_file():
        raise DreError(f"{path} not found ({what}). Get it: {where_to_get(key)}")


def _check(cond: bool, path: Path, key: str, msg: str) -> None:
    if not cond:
        raise DreError(f"{path}: {msg}. Expected the file from: {where_to_get(key)}")


# --- FLAME ------------------------------------------------------------------------------------------


@dataclass
class FlameModel:
    """FLAME arrays as float32/int64 numpy (chumpy and sparse already converted)."""

    v_template: np.ndarray  # (V, 3)
    shapedirs: np.ndarray  # (V, 3, K) K >= 350: [:300] identity, [300:] expression
    posedirs: np.ndarray  # (V, 3, 36)
    J_regressor: np.ndarray  # (5, V) dense
    weights: np.ndarray  # (V, 5) skinning weights
    parents: np.ndarray  # (5,) int64, parents[0] = -1
    faces: np.ndarray  # (F, 3) int64

    @property
    def n_vertices(self) -> int:
        return int(self.v_template.shape[0])


def load_flame(path: str | Path, *, official: bool | None = None) -> FlameModel:
    """Load and validate FLAME ``generic_model.pkl`` without chumpy (see :mod:`dre.safety.unpickle`)."""
    from dre.safety.unpickle import load_flame_pickle

    path = Path(path)
    _require_file(path, FLAME_FILE, "FLAME 2020 model")
    raw = load_flame_pickle(path)
    _check(isinstance(raw, dict), path, FLAME_FILE, f"holds a {type(raw).__name__}, not FLAME's dict of arrays")
    need = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
    missing = [k for k in need if k not in raw]
    _check(not missing, path, FLAME_FILE, f"has no {', '.join(missing)} (keys: {sorted(raw)})")
    try:
        v = np.asarray(raw["v_template"], dtype=np.float32)
        sd = np.asarray(raw["shapedirs"], dtype=np.float32)
        pd = np.asarray(raw["posedirs"], dtype=np.float32)
        jr = np.asarray(raw["J_regressor"], dtype=np.float32)
        w = np.asarray(raw["weights"], dtype=np.float32)
        kt = np.asarray(raw["kintree_table"]).astype(np.int64)
        f = np.asarray(raw["f"]).astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise DreError(f"{path}: an array has an unexpected type ({exc})") from exc
    V = v.shape[0] if v.ndim == 2 else -1
    _check(v.ndim == 2 and v.shape[1] == 3, path, FLAME_FILE, f"v_template has shape {v.shape}, expected (V, 3)")
    _check(
        sd.ndim == 3 and sd.shape[:2] == (V, 3) and sd.shape[2] >= N_SHAPE_PCS + 50,
        path, FLAME_FILE, f"shapedirs has shape {sd.shape}, expected ({V}, 3, {N_SHAPEDIRS})",
    )
    _check(pd.shape == (V, 3, N_POSEDIRS), path, FLAME_FILE, f"posedirs has shape {pd.shape}, expected ({V}, 3, 36)")
    _check(jr.shape == (N_JOINTS, V), path, FLAME_FILE, f"J_regressor has shape {jr.shape}, expected (5, {V})")
    _check(w.shape == (V, N_JOINTS), path, FLAME_FILE, f"weights has shape {w.shape}, expected ({V}, 5)")
    _check(kt.shape == (2, N_JOINTS), path, FLAME_FILE, f"kintree_table has shape {kt.shape}, expected (2, 5)")
    _check(f.ndim == 2 and f.shape[1] == 3, path, FLAME_FILE, f"f has shape {f.shape}, expected (F, 3)")
    _check(f.min() >= 0 and f.max() < V, path, FLAME_FILE, f"face indices outside [0, {V})")
    parents = kt[0].copy()
    parents[0] = -1  # stored as uint32 max in FLAME
    _check(
        all(0 <= parents[i] < i for i in range(1, N_JOINTS)), path, FLAME_FILE,
        f"kintree_table parents {kt[0].tolist()} are not a chain rooted at joint 0",
    )
    _check(np.allclose(w.sum(1), 1.0, atol=1e-3), path, FLAME_FILE, "skinning weight rows do not sum to 1")
    if _official(path, official):
        _check(
            V == N_VERTICES and f.shape[0] == N_FACES and sd.shape[2] == N_SHAPEDIRS,
            path, FLAME_FILE,
            f"has {V} vertices, {f.shape[0]} faces, {sd.shape[2]} shape components; FLAME 2020 has "
            f"{N_VERTICES}, {N_FACES}, {N_SHAPEDIRS}",
        )
    return FlameModel(v_template=v, shapedirs=sd, posedirs=pd, J_regressor=jr, weights=w, parents=parents, faces=f)


# --- landmark embedding --------------------------------------------------------------------------


@dataclass
class LandmarkEmbedding:
    """DECA's landmark embedding: face index + barycentric coordinates per landmark."""

    static_faces: np.ndarray  # (51,) int64
    static_bary: np.ndarray  # (51, 3) float32
    dynamic_faces: np.ndarray  # (79, 17) int64: contour per rounded yaw (see Flame)
    dynamic_bary: np.ndarray  # (79, 17, 3) float32
    full_faces: np.ndarray  # (68,) int64
    full_bary: np.ndarray  # (68, 3) float32


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


def load_landmark_embedding(path: str | Path, *, n_faces: int | None = None) -> LandmarkEmbedding:
    """Load ``landmark_embedding.npy`` (a pickled dict, two entries torch tensors) safely."""
    from dre.safety.unpickle import load_npy

    path = Path(path)
    _require_file(path, LANDMARK_FILE, "DECA landmark embedding")
    d = load_npy(path)
    _check(isinstance(d, dict), path, LANDMARK_FILE, f"holds a {type(d).__name__}, not DECA's dict")
    keys = (
        "static_lmk_faces_idx", "static_lmk_bary_coords", "dynamic_lmk_faces_idx",
        "dynamic_lmk_bary_coords", "full_lmk_faces_idx", "full_lmk_bary_coords",
    )
    missing = [k for k in keys if k not in d]
    _check(not missing, path, LANDMARK_FILE, f"has no {', '.join(missing)}")
    a = {k: _as_numpy(d[k]) for k in keys}
    emb = LandmarkEmbedding(
        static_faces=a["static_lmk_faces_idx"].astype(np.int64).reshape(-1),
        static_bary=a["static_lmk_bary_coords"].astype(np.float32).reshape(-1, 3),
        dynamic_faces=a["dynamic_lmk_faces_idx"].astype(np.int64),
        dynamic_bary=a["dynamic_lmk_bary_coords"].astype(np.float32),
        full_faces=a["full_lmk_faces_idx"].astype(np.int64).reshape(-1),
        full_bary=a["full_lmk_bary_coords"].astype(np.float32).reshape(-1, 3),
    )
    shapes = {
        "static_lmk_faces_idx": (emb.static_faces.shape, (51,)),
        "static_lmk_bary_coords": (emb.static_bary.shape, (51, 3)),
        "dynamic_lmk_faces_idx": (emb.dynamic_faces.shape, (79, 17)),
        "dynamic_lmk_bary_coords": (emb.dynamic_bary.shape, (79, 17, 3)),
        "full_lmk_faces_idx": (emb.full_faces.shape, (68,)),
        "full_lmk_bary_coords": (emb.full_bary.shape, (68, 3)),
    }
    for k, (got, want) in shapes.items():
        _check(got == want, path, LANDMARK_FILE, f"{k} has shape {got}, expected {want}")
    for name, bary in (("static", emb.static_bary), ("dynamic", emb.dynamic_bary), ("full", emb.full_bary)):
        _check(
            np.allclose(bary.sum(-1), 1.0, atol=1e-3), path, LANDMARK_FILE,
            f"{name} barycentric coordinates do not sum to 1",
        )
    if n_faces is not None:
        for name, idx in (("static", emb.static_faces), ("dynamic", emb.dynamic_faces), ("full", emb.full_faces)):
            _check(
                idx.min() >= 0 and idx.max() < n_faces, path, LANDMARK_FILE,
                f"{name} landmark face indices reach {idx.max()}, but the mesh has {n_faces} faces",
            )
    return emb


# --- head template (faces + UVs) -----------------------------------------------------------------


@dataclass
class HeadTemplate:
    """DECA's ``head_template.obj``: the renderer uses faces, UVs and UV faces (0-based)."""

    vertices: np.ndarray  # (V, 3) float32 (DECA ignores them)
    faces: np.ndarray  # (F, 3) int64
    uvs: np.ndarray  # (T, 2) float32, OBJ convention (v up)
    uv_faces: np.ndarray  # (F, 3) int64 into uvs


def load_head_template(path: str | Path, *, official: bool | None = None) -> HeadTemplate:
    """Parse the OBJ (``v``, ``vt``, triangular ``f a/b[/c]``); no external OBJ library needed."""
    path = Path(path)
    _require_file(path, TEMPLATE_FILE, "DECA head template with UVs")
    verts: list[list[float]] = []
    uvs: list[list[float]] = []
    faces: list[list[int]] = []
    uv_faces: list[list[int]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise DreError(f"{path}: not a text OBJ file ({exc}). Get it: {where_to_get(TEMPLATE_FILE)}") from exc
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        tag = parts[0]
        try:
            if tag == "v":
                verts.append([float(x) for x in parts[1:4]])
            elif tag == "vt":
                uvs.append([float(x) for x in parts[1:3]])
            elif tag == "f":
                corners = parts[1:]
                if len(corners) != 3:
                    raise DreError(f"{path}:{lineno}: face with {len(corners)} corners; only triangles are supported")
                fi, ti = [], []
                for c in corners:
                    bits = c.split("/")
                    fi.append(int(bits[0]))
                    if len(bits) < 2 or not bits[1]:
                        raise DreError(f"{path}:{lineno}: face corner {c!r} has no texture index (need v/vt)")
                    ti.append(int(bits[1]))
                faces.append(fi)
                uv_faces.append(ti)
        except ValueError as exc:
            raise DreError(f"{path}:{lineno}: unreadable OBJ line {line[:60]!r} ({exc})") from exc
    _check(len(faces) > 0 and len(uvs) > 0, path, TEMPLATE_FILE, "has no faces or no texture coordinates")
    v = np.asarray(verts, dtype=np.float32).reshape(-1, 3)
    t = np.asarray(uvs, dtype=np.float32).reshape(-1, 2)
    f = np.asarray(faces, dtype=np.int64)
    tf = np.asarray(uv_faces, dtype=np.int64)
    # OBJ indices are 1-based; negative ones count from the end
    f = np.where(f < 0, f + len(v), f - 1)
    tf = np.where(tf < 0, tf + len(t), tf - 1)
    _check(f.min() >= 0 and f.max() < len(v), path, TEMPLATE_FILE, "face vertex index out of range")
    _check(tf.min() >= 0 and tf.max() < len(t), path, TEMPLATE_FILE, "face texture index out of range")
    if _official(path, official):
        _check(
            len(v) == N_VERTICES and len(f) == N_FACES, path, TEMPLATE_FILE,
            f"has {len(v)} vertices and {len(f)} faces; DECA's template has {N_VERTICES} and {N_FACES}",
        )
    return HeadTemplate(vertices=v, faces=f, uvs=t, uv_faces=tf)


# --- texture space -------------------------------------------------------------------------------


@dataclass
class FlameTexture:
    """FLAME texture space, values 0-255, BGR channel order (as the file stores it).

    ``albedo = (mean + tex_dir @ tex) / 255``, then BGR→RGB (see reference §2.5). The official file is
    512² with 200 components; only the first ``n_tex`` are kept.
    """

    mean: np.ndarray  # (H, W, 3) float32
    tex_dir: np.ndarray  # (H, W, 3, n_tex) float32


def load_flame_texture(path: str | Path, *, n_tex: int = 50, official: bool | None = None) -> FlameTexture:
    path = Path(path)
    _require_file(path, TEXTURE_FILE, "FLAME texture space")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            _check({"mean", "tex_dir"} <= names, path, TEXTURE_FILE, f"has keys {sorted(names)}, expected mean, tex_dir")
            mean = z["mean"]
            tex_dir = z["tex_dir"]
    except (OSError, ValueError) as exc:
        raise DreError(f"{path}: not a readable .npz ({exc}). Get it: {where_to_get(TEXTURE_FILE)}") from exc
    _check(
        mean.ndim == 3 and mean.shape[2] == 3 and mean.shape[0] == mean.shape[1], path, TEXTURE_FILE,
        f"mean has shape {mean.shape}, expected (512, 512, 3)",
    )
    _check(
        tex_dir.ndim == 4 and tex_dir.shape[:3] == mean.shape and tex_dir.shape[3] >= n_tex, path, TEXTURE_FILE,
        f"tex_dir has shape {tex_dir.shape}, expected {mean.shape + (TEXTURE_PCS,)} (at least {n_tex} components)",
    )
    if _official(path, official):
        _check(
            mean.shape == (TEXTURE_SIZE, TEXTURE_SIZE, 3) and tex_dir.shape[3] == TEXTURE_PCS, path, TEXTURE_FILE,
            f"mean {mean.shape} / tex_dir {tex_dir.shape}: the FLAME texture space is 512x512x3 with 200 components",
        )
    return FlameTexture(
        mean=np.ascontiguousarray(mean, dtype=np.float32),
        tex_dir=np.ascontiguousarray(tex_dir[..., :n_tex], dtype=np.float32),
    )


# --- DECA checkpoint -----------------------------------------------------------------------------


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
    import pickle

    import torch

    from dre.safety.unpickle import inert_class

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
    """The ``E_flame`` state dict of DECA's ``deca_model.tar``, strictly checked against our encoder."""
    from dre.face3d.encoders import DECA_CODE_SIZE, check_state_dict

    path = Path(path)
    _require_file(path, DECA_FILE, "DECA trained model")
    ckpt = torch_load_weights(path, DECA_FILE)
    _check(
        isinstance(ckpt, dict) and "E_flame" in ckpt, path, DECA_FILE,
        f"has no 'E_flame' entry (top-level keys: {sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__})",
    )
    return check_state_dict(ckpt["E_flame"], DECA_CODE_SIZE, f"{path} (E_flame)")


def deca_path(assets_dir: str | Path) -> Path:
    return Path(assets_dir) / DECA_FILE


# --- EMOCA ---------------------------------------------------------------------------------------


def emoca_path(assets_dir: str | Path, model: str = DEFAULT_EMOCA_MODEL) -> Path:
    return Path(assets_dir) / EMOCA_DIR / model


def locate_emoca_checkpoint(folder: str | Path) -> Path:
    """The checkpoint EMOCA loads (``locate_checkpoint(mode='best')``): among ``*.ckpt`` under
    ``detail/checkpoints`` (sorted paths; stems ``last`` skipped), the smallest number after the last
    ``=`` of the stem; on ties the later path wins."""
    folder = Path(folder)
    root = folder / "detail" / "checkpoints"
    if not root.is_dir():
        root = folder / "detail" if (folder / "detail").is_dir() else folder
    ckpts = sorted(root.rglob("*.ckpt"))
    best: Path | None = None
    best_val = float("inf")
    for c in ckpts:
        if c.stem == "last":
            continue
        try:
            val = float(c.stem[c.stem.rfind("=") + 1 :])
        except ValueError:
            continue
        if val <= best_val:
            best, best_val = c, val
    if best is None:
        found = ", ".join(str(c.relative_to(folder)) for c in ckpts[:4]) or "none"
        raise DreError(
            f"{folder}: no EMOCA checkpoint named like '...=<val_loss>.ckpt' under {root} (found: {found}). "
            f"Get it: {where_to_get(EMOCA_DIR, folder.name)}"
        )
    return best


@dataclass
class EmocaModel:
    """What extraction needs from an EMOCA model folder (both encoders, prefixes stripped)."""

    folder: Path
    checkpoint: Path
    flags: Any  # dre.face3d.encoders.EmocaFlags
    e_flame: dict[str, Any] = field(repr=False)
    e_expression: dict[str, Any] = field(repr=False)


def read_emoca_flags(cfg_path: Path) -> Any:
    """EMOCA's pose flags from ``cfg.yaml`` (``detail.model``, else ``coarse.model``, else ``model``)."""
    import yaml

    from dre.face3d.encoders import EmocaFlags

    _require_file(cfg_path, EMOCA_DIR, "EMOCA model configuration")
    try:
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DreError(f"{cfg_path}: not readable YAML ({exc})") from exc
    model = None
    if isinstance(cfg, dict):
        for section in ("detail", "coarse"):
            sec = cfg.get(section)
            if isinstance(sec, dict) and isinstance(sec.get("model"), dict):
                model = sec["model"]
                break
        if model is None and isinstance(cfg.get("model"), dict):
            model = cfg["model"]
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
    from dre.face3d.encoders import DECA_CODE_SIZE, check_state_dict

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
    e_flame = check_state_dict(e_flame, DECA_CODE_SIZE, f"{ckpt_path} (deca.E_flame)")
    e_exp = check_state_dict(e_exp, flags.out_size, f"{ckpt_path} (deca.E_expression)")
    return EmocaModel(folder=folder, checkpoint=ckpt_path, flags=flags, e_flame=e_flame, e_expression=e_exp)


# --- checksums and the check table ---------------------------------------------------------------

_sha_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (cached per path/size/mtime within the process)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def asset_checksums(assets_dir: str | Path, extractor: str, emoca_model: str = DEFAULT_EMOCA_MODEL) -> dict[str, str]:
    """``{relative file: sha256}`` of every asset an extraction with ``extractor`` reads."""
    root = Path(assets_dir)
    files = [FLAME_FILE, TEXTURE_FILE, TEMPLATE_FILE, LANDMARK_FILE]
    if extractor == "deca":
        files.append(DECA_FILE)
    elif extractor == "emoca":
        folder = emoca_path(root, emoca_model)
        files.append(str((folder / "cfg.yaml").relative_to(root)))
        files.append(str(locate_emoca_checkpoint(folder).relative_to(root)))
    return {f: file_sha256(root / f) for f in files if (root / f).is_file()}


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


def _status(name: str, path: Path, required: bool, source: str, validate: Any) -> AssetStatus:
    found = path.exists()
    if not found:
        return AssetStatus(name, path, False, False, "missing", source, required)
    try:
        validate()
    except DreError as exc:
        msg = str(exc).split(". Expected the file from:")[0].split(". Get it:")[0]
        return AssetStatus(name, path, True, False, msg, source, required)
    return AssetStatus(name, path, True, True, "", source, required)


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

    def v_flame() -> None:
        flame_box["m"] = load_flame(root / FLAME_FILE)

    def v_template() -> None:
        t = load_head_template(root / TEMPLATE_FILE)
        m = flame_box.get("m")
        if m is not None and not (t.faces.shape == m.faces.shape and np.array_equal(t.faces, m.faces)):
            raise DreError(f"{root / TEMPLATE_FILE}: its faces differ from generic_model.pkl's (not the same topology)")

    def v_landmarks() -> None:
        m = flame_box.get("m")
        load_landmark_embedding(root / LANDMARK_FILE, n_faces=None if m is None else len(m.faces))

    def v_fan() -> None:
        for f in FAN_FILES:
            p = root / FAN_DIR / f
            if not p.is_file():
                raise DreError(f"{p} missing")
            torch_load_weights(p, FAN_DIR)

    rows = [
        _status(FLAME_FILE, root / FLAME_FILE, True, where_to_get(FLAME_FILE), v_flame),
        _status(TEXTURE_FILE, root / TEXTURE_FILE, True, where_to_get(TEXTURE_FILE), lambda: load_flame_texture(root / TEXTURE_FILE)),
        _status(TEMPLATE_FILE, root / TEMPLATE_FILE, True, where_to_get(TEMPLATE_FILE), v_template),
        _status(LANDMARK_FILE, root / LANDMARK_FILE, True, where_to_get(LANDMARK_FILE), v_landmarks),
        _status(DECA_FILE, root / DECA_FILE, "deca" in require, where_to_get(DECA_FILE), lambda: load_deca_checkpoint(root / DECA_FILE)),
        _status(
            f"{EMOCA_DIR}/{emoca_model}", emoca_path(root, emoca_model), "emoca" in require,
            where_to_get(EMOCA_DIR, emoca_model), lambda: load_emoca(emoca_path(root, emoca_model)),
        ),
        _status(FAN_DIR, root / FAN_DIR, "fan" in require, where_to_get(FAN_DIR), v_fan),
    ]
    return rows


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
