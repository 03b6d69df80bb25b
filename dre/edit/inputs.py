"""Reading an edit's inputs: source photos and their codes, the target face, the album mean shape.

Sources are aligned album photos (a folder written by ``dre align``, or one file of it); their FLAME
codes come from the album's ``codes.parquet`` when given (the same codes the model was trained on) or
are extracted here. The target is an aligned folder with ``align.parquet`` (what the workflow's
``align_target`` rule writes) or an aligned image with landmarks available beside it; its codes are
always extracted here, with the extractor the user asked for.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from dre.align.backends import NoLandmarks
from dre.align.imageio import ImageLoadError, load_rgb
from dre.align.sidecar import read_sidecar, sidecar_candidates
from dre.data import LmdbAlbum
from dre.errors import DreError
from dre.face3d.codes import FlameCodes
from dre.face3d.extractor import Extractor
from dre.tables import ALIGN, ALIGN_FILE, CODES
from dre.utils.images import list_images

log = logging.getLogger(__name__)


@dataclass
class Face:
    """One aligned face: where it came from, its pixels and (when known) its 68 landmarks."""

    path: Path
    stem: str
    image: np.ndarray  # (H, W, 3) uint8, aligned
    landmarks: np.ndarray | None  # (68, 2) in the aligned image's pixels


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 HWC, upright: read by the album loader of `dre align` (EXIF orientation, CMYK, 16-bit,
    palette and alpha handled alike), with a clear error for anything that is not an image."""
    if not Path(path).is_file():
        raise DreError(f"image {path} does not exist")
    try:
        return load_rgb(path).array
    except ImageLoadError as exc:
        raise DreError(f"{path} is not a readable image ({exc.message})") from None


def _face_index(row: dict) -> int:
    """Which face of its photo an align.parquet row is (0 when the cell is empty: one face per photo)."""
    value = row.get("face_index")
    return 0 if value is None or pd.isna(value) else int(value)


def _read_align_table(folder: Path) -> "pd.DataFrame | None":
    """The folder's align.parquet, or None for a plain folder of aligned images."""
    table = folder / ALIGN_FILE
    return ALIGN.read(table)[0] if table.is_file() else None


def _row_output(folder: Path, row) -> Path | None:
    out = row.get("output")
    if out is None or (isinstance(out, float) and np.isnan(out)) or out == "":
        return None
    p = Path(out)
    return p if p.is_absolute() else folder / p


def _landmarks(row) -> np.ndarray | None:
    lm = row.get("aligned_landmarks")
    if lm is None:
        return None
    arr = np.asarray(lm, dtype=np.float32)
    return arr.reshape(68, 2) if arr.size == 136 else None


def _sidecar_landmarks(path: Path) -> np.ndarray | None:
    """68×2 landmarks in a sidecar beside the image (``<stem>.npy``/``.txt``, DECA's convention), found and
    read as `dre align --backend sidecar` does; None when there is none."""
    for cand in sidecar_candidates(path):
        if cand.is_file():
            try:
                faces = read_sidecar(cand)
            except NoLandmarks as exc:
                raise DreError(f"landmark file {cand}: {exc.message}") from None
            if len(faces) != 1:
                raise DreError(f"landmark file {cand} holds {len(faces)} faces; an aligned image has one")
            return faces[0]
    return None


def list_sources(source: Path) -> list[Face]:
    """The aligned source faces, in file-name order (so outputs and rows are stable across runs).

    A folder with ``align.parquet`` contributes its ``ok`` rows (landmarks included); a plain folder
    contributes every image file; a file contributes itself.
    """
    source = Path(source)
    if source.is_dir():
        table = _read_align_table(source)
        faces: list[Face] = []
        if table is not None:
            for row in table.to_dict("records"):
                if row.get("status") != "ok":
                    continue
                out = _row_output(source, row)
                if out is None:
                    continue
                faces.append(Face(out, out.stem, read_image(out), _landmarks(row)))
        else:
            for p in list_images(source):
                faces.append(Face(p, p.stem, read_image(p), _sidecar_landmarks(p)))
        faces.sort(key=lambda f: f.stem)
        if not faces:
            raise DreError(f"--source {source}: no aligned images found (expected a `dre align` output folder)")
        return faces
    if source.is_file():
        return [_single_face(source, "--source")]
    raise DreError(f"--source {source} does not exist")


def _single_face(path: Path, flag: str) -> Face:
    """A file: landmarks from its folder's align.parquet row when there is one, else a sidecar file."""
    table = _read_align_table(path.parent)
    if table is not None:
        for row in table.to_dict("records"):
            out = _row_output(path.parent, row)
            if out is not None and out.resolve() == path.resolve():
                if row.get("status") != "ok":
                    raise DreError(f"{flag} {path}: align.parquet says {row.get('status')}: {row.get('message')}")
                return Face(path, path.stem, read_image(path), _landmarks(row))
    return Face(path, path.stem, read_image(path), _sidecar_landmarks(path))


def load_target(target: Path) -> Face:
    """The target face; a clear error when alignment found no usable face in it."""
    target = Path(target)
    if target.is_dir():
        table = _read_align_table(target)
        if table is None:
            imgs = list_images(target)
            if len(imgs) != 1:
                raise DreError(
                    f"--target {target}: a folder must hold align.parquet (from `dre align`) or exactly one image"
                )
            return _with_landmarks(_single_face(imgs[0], "--target"), "--target")
        rows = table.to_dict("records")
        ok = [r for r in rows if r.get("status") == "ok" and _row_output(target, r) is not None]
        if not ok:
            detail = "; ".join(f"{r.get('source')}: {r.get('status')} {r.get('message') or ''}".strip() for r in rows)
            raise DreError(f"--target {target}: no face found in the target photo ({detail or 'no rows'})")
        ok.sort(key=_face_index)
        row = ok[0]
        out = _row_output(target, row)
        return _with_landmarks(Face(out, out.stem, read_image(out), _landmarks(row)), "--target")
    if target.is_file():
        return _with_landmarks(_single_face(target, "--target"), "--target")
    raise DreError(f"--target {target} does not exist")


def load_targets(target: Path) -> list[Face]:
    """The target's frames: one face for a photo, every frame (in file-name order) for a frames folder.

    A folder is a *driving sequence* when it holds more than one photo: ``dre align`` output with rows
    from several source files (one face each: the largest), or a plain folder of several aligned images
    with landmark sidecars. Frames in which alignment found no face are skipped with a warning; a
    sequence needs at least two usable frames.
    """
    target = Path(target)
    if not target.is_dir():
        return [load_target(target)]
    table = _read_align_table(target)
    if table is None:
        imgs = list_images(target)
        if len(imgs) <= 1:
            return [load_target(target)]
        return [_with_landmarks(_single_face(p, "--target"), "--target") for p in imgs]
    rows = table.to_dict("records")
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(str(r.get("source")), []).append(r)
    if len(by_source) <= 1:
        return [load_target(target)]
    frames: list[Face] = []
    for src in sorted(by_source, key=lambda p: Path(p).name):
        ok = [r for r in by_source[src] if r.get("status") == "ok" and _row_output(target, r) is not None]
        if not ok:
            why = "; ".join(f"{r.get('status')} {r.get('message') or ''}".strip() for r in by_source[src])
            warnings.warn(f"--target {target}: skipping frame {src} ({why})", stacklevel=2)
            continue
        row = min(ok, key=_face_index)
        out = _row_output(target, row)
        frames.append(_with_landmarks(Face(out, out.stem, read_image(out), _landmarks(row)), "--target"))
    if len(frames) < 2:
        raise DreError(f"--target {target}: a frames folder needs at least two frames with a face "
                       f"({len(frames)} of {len(by_source)} usable)")
    return frames


def _with_landmarks(face: Face, flag: str) -> Face:
    if face.landmarks is None:
        raise DreError(
            f"{flag} {face.path}: no landmarks for this aligned image. Align it first (`dre align --input "
            f"{face.path} --output DIR`, or `--already-aligned`) and pass DIR, or put 68×2 landmarks in "
            f"{face.path.with_suffix('.npy').name} beside it"
        )
    return face


def codes_for_sources(
    faces: Sequence[Face], codes_path: Path, extractor: str, device: "torch.device"
) -> tuple[list[Face], "FlameCodes", "torch.Tensor"]:
    """Source codes and tforms from the album's codes.parquet, matched by file stem.

    Faces whose extraction failed are dropped with a warning when they came from a folder listing;
    the codes must have been written by the extractor the user named (mixing would silently change
    what "source extractor" means).
    """
    df, meta = CODES.read(codes_path, flag="--source-codes")
    table_extractor = meta.get("extractor")
    if table_extractor is None and len(df):
        table_extractor = str(df["extractor"].iloc[0])
    if table_extractor and table_extractor != extractor:
        raise DreError(
            f"--source-codes {codes_path} holds {table_extractor} codes but --source-extractor is {extractor}; "
            f"pass the {extractor} codes table (results/codes/<album>.{extractor}.parquet)"
        )
    by_stem = {str(s): r for s, r in zip(df["stem"], df.to_dict("records"))}
    kept, rows = [], []
    for face in faces:
        row = by_stem.get(face.stem)
        if row is None or row.get("status") != "ok":
            why = "has no row" if row is None else f"says {row.get('status')}: {row.get('message')}"
            if len(faces) == 1:
                raise DreError(f"--source-codes {codes_path} {why} for source {face.path}")
            warnings.warn(f"skipping source {face.path}: {codes_path} {why}", stacklevel=2)
            continue
        kept.append(face)
        rows.append(row)
    if not kept:
        raise DreError(f"--source-codes {codes_path}: none of the sources has usable codes")
    codes, tform = FlameCodes.from_frame(pd.DataFrame(rows), device=device)
    return kept, codes, tform


def extract_codes(
    faces: Sequence[Face], assets: Path, kind: str, device: "torch.device", emoca_model: str, flag: str
) -> tuple["FlameCodes", "torch.Tensor"]:
    """Run the DECA/EMOCA encoder on aligned faces (the DECA crop needs their 68 landmarks)."""
    for f in faces:
        _with_landmarks(f, flag)
    ext = Extractor.from_assets(assets, kind, device, emoca_model=emoca_model)
    crops, tform = ext.crop([f.image for f in faces], [f.landmarks for f in faces])

    with torch.inference_mode():
        codes = ext.encode(crops.to(device))
    return codes.to(device), tform.to(device)


def read_mean_shape(path: Path) -> np.ndarray:
    """A (1, 100) float32 mean shape from ``mean_shape.npy`` (written by ``dre pack --mean-shape``)."""
    path = Path(path)
    if not path.is_file():
        raise DreError(f"--mean-shape {path} does not exist (it is written by `dre pack --mean-shape`)")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DreError(f"--mean-shape {path} is not a plain .npy array ({exc})") from None
    arr = np.asarray(arr, dtype=np.float32).reshape(1, -1)
    if arr.shape[1] != 100:
        raise DreError(f"--mean-shape {path} holds {arr.shape[1]} values, expected 100 FLAME shape coefficients")
    return arr


def _lmdb_mean_shape(folder: Path) -> tuple[bool, np.ndarray | None]:
    """(is an LMDB folder, its recorded mean shape) for the folder a mean-shape file sits in."""
    if not (folder / "data.mdb").is_file():
        return False, None
    ms = LmdbAlbum(folder).meta.get("mean_shape")
    return True, (None if ms is None else np.asarray(ms, dtype=np.float32).reshape(1, -1))


def resolve_mean_shape(path: Path | None, model_meta: dict, model_path: Path) -> np.ndarray | None:
    """The shape to render every source with, or None to keep each source's own shape.

    The stage-2 model learnt the album with the buffers it was packed with: when the album was packed
    with a mean shape, the model file records it (``meta.mean_shape``) and the sources must use the
    same one. A ``--mean-shape`` file that disagrees with the model (or with the LMDB it sits in) is
    another album's, which would silently change the person's face shape: that is an error.
    """
    recorded = model_meta.get("mean_shape")
    recorded = None if recorded is None else np.asarray(recorded, dtype=np.float32).reshape(1, -1)
    if path is None:
        if recorded is not None:
            log.info("using the album mean shape recorded in %s", model_path)
        return recorded
    ms = read_mean_shape(path)
    is_lmdb, lmdb_ms = _lmdb_mean_shape(Path(path).parent)
    if is_lmdb and (lmdb_ms is None or not np.allclose(lmdb_ms, ms, atol=1e-5)):
        raise DreError(
            f"--mean-shape {path} does not match the mean shape recorded in the LMDB {Path(path).parent} "
            "(a file from another album, or an LMDB packed without --mean-shape)"
        )
    if recorded is not None and not np.allclose(recorded, ms, atol=1e-5):
        raise DreError(
            f"--mean-shape {path} belongs to another album: it differs from the mean shape the model "
            f"{model_path} was trained with (max |diff| {float(np.abs(recorded - ms).max()):.3g}); pass the "
            "mean_shape.npy of the album the model was fine-tuned on"
        )
    if recorded is None and model_meta.get("format") is not None and model_meta.get("stage") == 2:
        warnings.warn(
            f"--mean-shape {path} given, but the model {model_path} was trained on buffers rendered with each "
            "photo's own shape; the edit buffers will not match its training buffers",
            stacklevel=2,
        )
    return ms
