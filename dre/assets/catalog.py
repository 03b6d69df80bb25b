"""Names, places and sources of the files in an assets folder, their checksums, and what ``fetch`` downloads.

Why one catalogue: the licensed files (FLAME, DECA, EMOCA, face-alignment weights) come from
registration-gated sites and are never in the repository, so every loader that rejects a file, and
``dre assets check``, must say where the right file is obtained. Standard library only: the face3d
loaders, the align environment (no torch) and the asset commands all import it.

Layout of an assets folder::

    generic_model.pkl          FLAME 2020
    FLAME_texture.npz          FLAME texture space (albedo)
    head_template.obj          DECA data/: faces + UVs
    landmark_embedding.npy     DECA data/: 68-landmark embedding
    deca_model.tar             DECA release (a torch.save file)
    emoca/<MODEL>/cfg.yaml     EMOCA model folder (+ detail/checkpoints/**/*.ckpt)
    torch/hub/checkpoints/     face-alignment weights (the align rule sets TORCH_HOME=<assets>/torch)
    .dre-assets.json           what `dre assets fetch` / `add` placed (dre.assets.placement)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Iterable, TypeVar

from dre.errors import DreError
from dre.utils.hashing import sha256_file
from dre.utils.synthetic import is_synthetic_assets

P = TypeVar("P", bound=PurePath)

FLAME_FILE = "generic_model.pkl"
TEXTURE_FILE = "FLAME_texture.npz"
TEMPLATE_FILE = "head_template.obj"
LANDMARK_FILE = "landmark_embedding.npy"
DECA_FILE = "deca_model.tar"
EMOCA_DIR = "emoca"
DEFAULT_EMOCA_MODEL = "EMOCA_v2_lr_mse_20"
EXTRACTORS = ("deca", "emoca")  # the FLAME-code regressors: every stage, the workflow and the loaders use this
FAN_DIR = "torch/hub/checkpoints"
S3FD_FILE = "s3fd-619a316812.pth"
FAN4_FILE = "2DFAN4-11f355bf06.pth.tar"
FAN_FILES: dict[str, str] = {
    # face-alignment 1.5 file names (its URLs' basenames) under <torch hub dir>/checkpoints/
    S3FD_FILE: f"https://www.adrianbulat.com/downloads/python-fan/{S3FD_FILE}",
    FAN4_FILE: f"https://www.adrianbulat.com/downloads/python-fan/{FAN4_FILE}",
}

SOURCES: dict[str, str] = {
    FLAME_FILE: (
        "register at https://flame.is.tue.mpg.de, download 'FLAME 2020' (FLAME2020.zip), then "
        "`dre assets add FLAME2020.zip --assets <assets>` (FLAME 2023 bases are not compatible with DECA/EMOCA codes)"
    ),
    TEXTURE_FILE: (
        "register at https://flame.is.tue.mpg.de, download 'FLAME texture space' (FLAME_texture.npz), then "
        "`dre assets add <the download> --assets <assets>`"
    ),
    **{name: ("`dre assets fetch deca-data --assets <assets>` (from DECA's data folder: "
              f"https://github.com/yfeng95/DECA/tree/master/data, {name})") for name in (TEMPLATE_FILE, LANDMARK_FILE)},
    DECA_FILE: (
        "DECA README 'DECA trained model': https://drive.google.com/file/d/1rp8kdyLPvErw2dTmqtjISRVvQLj6Yzje "
        "(a torch.save file, do not untar it), then `dre assets add deca_model.tar --assets <assets>`"
    ),
    EMOCA_DIR: (
        "register at https://emoca.is.tue.mpg.de, download "
        "https://download.is.tue.mpg.de/emoca/assets/EMOCA/models/{model}.zip, then "
        "`dre assets add {model}.zip --assets <assets>` (it unpacks cfg.yaml and detail/checkpoints/ into "
        "<assets>/emoca/)"
    ),
    FAN_DIR: (
        "`dre assets fetch fan --assets <assets>` (face-alignment 1.5 weights: " + " and ".join(FAN_FILES.values())
        + " into <assets>/torch/hub/checkpoints/)"
    ),
}


def where_to_get(key: str, model: str = DEFAULT_EMOCA_MODEL) -> str:
    """Where a user obtains the file ``key`` (a file name above, ``EMOCA_DIR`` or ``FAN_DIR``)."""
    return SOURCES[key].format(model=model)


def deca_path(assets_dir: str | Path) -> Path:
    return Path(assets_dir) / DECA_FILE


def emoca_path(assets_dir: str | Path, model: str = DEFAULT_EMOCA_MODEL) -> Path:
    return Path(assets_dir) / EMOCA_DIR / model


def best_checkpoint(paths: Iterable[P]) -> P | None:
    """EMOCA's "best" rule over checkpoint paths (files or archive member names, sorted by the caller):
    stems ``last`` skipped, smallest number after the last ``=`` of the stem, the later path on ties."""
    best = None
    best_val = float("inf")
    for c in paths:
        if c.stem == "last":
            continue
        try:
            val = float(c.stem[c.stem.rfind("=") + 1 :])
        except ValueError:
            continue
        if val <= best_val:
            best, best_val = c, val
    return best


def locate_emoca_checkpoint(folder: str | Path) -> Path:
    """The checkpoint EMOCA itself loads from a model folder (its "best" mode): :func:`best_checkpoint`
    of the sorted ``*.ckpt`` under ``detail/checkpoints`` (the number after ``=`` is the validation loss)."""
    folder = Path(folder)
    root = folder / "detail" / "checkpoints"
    if not root.is_dir():
        root = folder / "detail" if (folder / "detail").is_dir() else folder
    ckpts = sorted(root.rglob("*.ckpt"))
    best = best_checkpoint(ckpts)
    if best is None:
        found = ", ".join(str(c.relative_to(folder)) for c in ckpts[:4]) or "none"
        raise DreError(
            f"{folder}: no EMOCA checkpoint named like '...=<val_loss>.ckpt' under {root} (found: {found}). "
            f"Get it: {where_to_get(EMOCA_DIR, folder.name)}"
        )
    return best


# --- what every loader raises -------------------------------------------------------------------


def official_sizes_required(path: Path, official: bool | None) -> bool:
    """Loaders' ``official`` argument: ``None`` = official FLAME 2020 / DECA sizes unless the file's
    folder holds the ``SYNTHETIC`` marker (synthetic assets keep the structure with fewer vertices)."""
    return (not is_synthetic_assets(path.parent)) if official is None else official


def require_file(path: Path, key: str, what: str) -> None:
    """A missing asset is a :class:`DreError` naming the file and where to obtain it."""
    if not path.is_file():
        raise DreError(f"{path} not found ({what}). Get it: {where_to_get(key)}")


def expect(cond: bool, path: Path, key: str, msg: str) -> None:
    """A malformed asset is a :class:`DreError` naming the file, the problem and where the right one is."""
    if not cond:
        raise DreError(f"{path}: {msg}. Expected the file from: {where_to_get(key)}")


# --- checksums ----------------------------------------------------------------------------------

RENDER_FILES = (FLAME_FILE, TEXTURE_FILE, TEMPLATE_FILE, LANDMARK_FILE)
"""What rendering buffers reads (``FaceModel``); extraction reads these plus its encoder's files."""


def asset_checksums(
    assets_dir: str | Path, extractor: str | None = None, emoca_model: str = DEFAULT_EMOCA_MODEL
) -> dict[str, str]:
    """``{relative file: sha256}`` of every asset rendering (``extractor=None``) or an extraction reads."""
    root = Path(assets_dir)
    files = list(RENDER_FILES)
    if extractor == "deca":
        files.append(DECA_FILE)
    elif extractor == "emoca":
        folder = emoca_path(root, emoca_model)
        files.append(str((folder / "cfg.yaml").relative_to(root)))
        files.append(str(locate_emoca_checkpoint(folder).relative_to(root)))
    return {f: sha256_file(root / f) for f in files if (root / f).is_file()}


# --- what `dre assets fetch` downloads ----------------------------------------------------------
# Only files published without registration: face-alignment's two weight files (the URLs face-alignment
# 1.5 itself downloads; their basenames are the names it looks for in the torch hub cache) and DECA's two
# data files, from a fixed commit of DECA's repository (``master`` may move).
# Checksums: none is recorded yet, because none could be verified from an authoritative source here (the
# hexadecimal part of face-alignment's file names is not checked by face-alignment itself, so it is not
# treated as a hash). Files are validated by content instead: each must load through the loader
# ``dre assets check`` runs. Add a sha256 to an entry once it is known; ``fetch`` then checks it too.

DECA_DATA_COMMIT = "bde12c91025d68014e63254103a98fae6d77ef48"
"""A commit of github.com/yfeng95/DECA whose ``data/`` holds both files."""
DECA_DATA_URL = f"https://raw.githubusercontent.com/yfeng95/DECA/{DECA_DATA_COMMIT}/data/{{name}}"


@dataclass(frozen=True)
class Download:
    """One pinned file: where it goes (relative to the assets folder) and where it comes from."""

    rel: str
    url: str
    group: str  # the word of `dre assets fetch` that selects it
    sha256: str | None = None  # only where known from an authoritative source

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]


DOWNLOADS: tuple[Download, ...] = (
    Download(f"{FAN_DIR}/{S3FD_FILE}", FAN_FILES[S3FD_FILE], "fan"),
    Download(f"{FAN_DIR}/{FAN4_FILE}", FAN_FILES[FAN4_FILE], "fan"),
    Download(TEMPLATE_FILE, DECA_DATA_URL.format(name=TEMPLATE_FILE), "deca-data"),
    Download(LANDMARK_FILE, DECA_DATA_URL.format(name=LANDMARK_FILE), "deca-data"),
)
GROUPS = ("fan", "deca-data", "all")
