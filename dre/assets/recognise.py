"""What a downloaded file or archive member is, told by its content, not by its name.

Why content: downloads get renamed (``deca_model (1).tar``, ``download.zip``), and a wrong file in the
right place is the most common asset failure. The first bytes say the container (pickle, NumPy array,
zip, tar, OBJ text, YAML, HTML); zip-based files are told apart by their member names (a ``.npz`` holds
``mean.npy``/``tex_dir.npy``, a ``torch.save`` file ``<name>/data.pkl``); torch files by their keys
(``E_flame`` = DECA, S3FD/FAN layer names = face-alignment). The real loader then has the last word
(:mod:`dre.assets.check`). Names are used only to choose among files of the same kind: FLAME2020.zip
holds three FLAME models of identical structure, of which DECA/EMOCA use ``generic_model.pkl``.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from dre.assets.archive import is_tar
from dre.assets.catalog import DECA_FILE, FAN_DIR, FLAME_FILE, LANDMARK_FILE, TEMPLATE_FILE, TEXTURE_FILE
from dre.assets.check import fan_kind
from dre.errors import DreError
from dre.face3d.encoder_files import torch_load_weights
from dre.safety.unpickle import TORCH_MAGIC

TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + TORCH_MAGIC.to_bytes(10, "little")
"""How a pre-1.6 ``torch.save`` file starts: its magic number pickled (protocol 2, LONG1 of 10 bytes)."""
SINGLE_FILES = {"pickle": FLAME_FILE, "npy": LANDMARK_FILE, "obj": TEMPLATE_FILE}
"""Containers that hold one asset file each (its loader, e.g. the restricted unpickler, confirms it)."""


def sniff(head: bytes) -> str:
    """The container of a file from its first bytes: zip, tar, gzip, bzip2, xz, torch-legacy, pickle, npy,
    html, pdf, obj, yaml or unknown (tar is recognised at offset 257, so pass at least 512 bytes)."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(TORCH_LEGACY_MAGIC):
        return "torch-legacy"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"%PDF"):
        return "pdf"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:  # a multi-byte character cut at the end of the sample
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return "unknown"
    low = text.lstrip().lower()
    if low.startswith(("<!doctype", "<html", "<?xml", "<head")) or "<html" in low[:512]:
        return "html"
    if _looks_like_obj(text):
        return "obj"
    if any(line.rstrip().endswith(":") or ": " in line for line in text.splitlines()[:40]):
        return "yaml"
    return "unknown"


_OBJ_TAGS = {"#", "v", "vt", "vn", "f", "o", "g", "s", "l", "mtllib", "usemtl"}


def _looks_like_obj(text: str) -> bool:
    """Wavefront OBJ text: every complete line starts with an OBJ tag and at least 3 are vertices
    (a real head template's first 4 KB hold only ``v`` lines)."""
    lines = [ln.split() for ln in text.splitlines()[:-1]]  # the last line may be cut by the sample
    lines = [ln for ln in lines if ln]
    if not lines or any(ln[0] not in _OBJ_TAGS and not ln[0].startswith("#") for ln in lines):
        return False
    return sum(ln[0] == "v" for ln in lines) >= 3


def zip_kind(names: list[str]) -> str:
    """A zip's role from its member names: ``npz-texture``, ``npz-bfm``, ``npz`` (other arrays), ``torch``
    (a ``torch.save`` file) or ``archive`` (a real archive to look into)."""
    files = [n for n in names if not n.endswith("/")]
    if files and all(n.endswith(".npy") and "/" not in n for n in files):
        keys = {n[: -len(".npy")] for n in files}
        if {"mean", "tex_dir"} <= keys:
            return "npz-texture"
        if {"MU", "PC"} <= keys:
            return "npz-bfm"
        return "npz"
    tops = {n.split("/", 1)[0] for n in files}
    if len(tops) == 1 and any(n.endswith("/data.pkl") for n in files) and any(n.endswith("/version") or
                                                                               n.endswith("/.format_version")
                                                                               for n in files):  # fmt: skip
        return "torch"
    return "archive"


def torch_role(path: Path) -> str:
    """The asset a ``torch.save`` file is: ``deca_model.tar`` or a face-alignment weight file (relative
    destination), or DreError saying what it is instead."""
    obj = torch_load_weights(path, DECA_FILE)
    if isinstance(obj, dict) and "E_flame" in obj:
        return DECA_FILE
    kind = fan_kind(obj)
    if kind is not None:
        return f"{FAN_DIR}/{kind}"
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if isinstance(state, dict) and any(str(k).startswith("deca.E_expression.") for k in state):
        raise DreError(
            f"{path}: an EMOCA checkpoint on its own; give `dre assets add` the model's zip (e.g. "
            "EMOCA_v2_lr_mse_20.zip), which holds its cfg.yaml too"
        )
    keys = sorted(obj)[:6] if isinstance(obj, dict) else type(obj).__name__
    raise DreError(f"{path}: a torch file, but neither DECA's deca_model.tar nor face-alignment weights (keys: {keys})")


def file_role(path: Path) -> str | None:
    """The destination (relative to the assets folder) of a single file by its content; None when the
    file is a real archive (zip/tar) to look into; DreError when it is not an asset file."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    kind = sniff(head)
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise DreError(f"{path}: a damaged zip file ({exc}); download it again") from None
        zk = zip_kind(names)
        if zk == "npz-texture":
            return TEXTURE_FILE
        if zk == "npz-bfm":
            raise DreError(
                f"{path}: the BFM-derived albedo (FLAME_albedo_from_BFM.npz, keys MU/PC); DiffusionRig uses the FLAME "
                "texture space instead: download 'FLAME texture space' from https://flame.is.tue.mpg.de"
            )
        if zk == "npz":
            raise DreError(f"{path}: a NumPy .npz with keys {sorted(names)[:6]}, not one of the asset files")
        return torch_role(path) if zk == "torch" else None
    if kind in ("tar", "gzip", "bzip2", "xz"):
        if kind == "tar" and _tar_names_are_torch(path):
            return torch_role(path)
        if is_tar(path):
            return None
        raise DreError(f"{path}: a {kind}-compressed file that is not a tar archive; decompress it yourself first")
    if kind == "torch-legacy":
        return torch_role(path)
    if kind in SINGLE_FILES:
        return SINGLE_FILES[kind]
    if kind == "html":
        raise DreError(
            f"{path}: an HTML page, not an asset: a failed download (a login or 'cannot scan for viruses' page) "
            "was saved in its place. Download it again in a browser"
        )
    raise DreError(f"{path}: not recognised as any asset file or archive (it looks like {kind})")


def _tar_names_are_torch(path: Path) -> bool:
    """An uncompressed tar written by ``torch.save`` before 1.6 (members ``pickle``, ``storages``, ``tensors``)."""
    try:
        with tarfile.open(path, "r:") as t:
            return {"pickle", "storages", "tensors"} <= set(t.getnames())
    except (tarfile.TarError, OSError):
        return False


def member_role(name: str, head: bytes) -> str | None:
    """First guess at an archive member's role from its first bytes: a destination for single-file assets,
    ``probe`` for zip/torch members that must be extracted to be told apart, ``cfg`` for a YAML file
    (EMOCA's), None for everything else (PDFs, images, READMEs)."""
    kind = sniff(head)
    if kind in ("zip", "torch-legacy", "tar"):
        return "probe"
    if kind in SINGLE_FILES:
        return SINGLE_FILES[kind]
    if kind == "yaml" and PurePosixPath(name).suffix in (".yaml", ".yml"):
        return "cfg"
    return None
