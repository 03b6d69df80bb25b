"""``dre pack`` engine: codes.parquet + aligned images → rendered buffers → versioned LMDB + manifest.

Rendering is batched on the chosen device; image reading/encoding for the next batch overlaps with the
current batch's rendering in a small thread pool (PNG codecs release the GIL). Each batch is one LMDB
write transaction. The whole store is built in a temporary folder and renamed on success
(:func:`dre.data.store.build_lmdb`).
"""

from __future__ import annotations

import io
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dre.align.imageio import ImageLoadError, load_rgb
from dre.data import schema
from dre.data.legacy import LegacyLmdb
from dre.data.store import build_lmdb
from dre.errors import DreError
from dre.face3d.codes import CODE_DIMS, CODE_ORDER, Buffers, FlameCodes
from dre.face3d.face_model import FaceModel
from dre.pack.config import PackConfig
from dre.safety.ownership import claim_dir, claim_table
from dre.tables import CODES, MANIFEST
from dre.utils.device import resolve_device
from dre.utils.hashing import sha256_file
from dre.utils.signals import handling
from dre.utils.synthetic import warn_synthetic

log = logging.getLogger(__name__)

MEAN_SHAPE_FILE = "mean_shape.npy"
_ORIENTATION = 0x0112  # the EXIF tag that says how to turn the stored pixels upright


class Renderer(Protocol):
    """What pack needs from :class:`dre.face3d.face_model.FaceModel`."""

    synthetic: bool
    checksums: dict[str, str]

    def render(self, codes: "FlameCodes", tform: "torch.Tensor", image_size: int = 256,
               center: "torch.Tensor | None" = None) -> "Buffers": ...  # fmt: skip


def claim_outputs(cfg: PackConfig) -> None:
    """Refuse, before any work, outputs that would replace an input or files dre did not write."""
    inputs = [cfg.images, cfg.codes, cfg.assets, cfg.import_legacy]
    claim_dir(cfg.out, inputs=inputs)
    claim_table(cfg.manifest_path(), flag="--manifest", inputs=[*inputs, cfg.out])


@dataclass
class PackResult:
    out: Path
    manifest: Path
    count: int
    skipped: int
    seconds: float
    synthetic: bool


# ------------------------------------------------------------------ inputs


def _manifest_row(index: int, source: str, stem: str, box: tuple[int, int, int, int],
                  codes: dict[str, np.ndarray] | None) -> dict[str, Any]:  # fmt: skip
    """One :data:`dre.tables.MANIFEST` row (codes columns are null for legacy imports)."""
    row: dict[str, Any] = {"index": index, "source": source, "stem": stem, "box": list(box)}
    for name in (*CODE_ORDER, "tform"):
        row[name] = None if codes is None else np.asarray(codes[name], np.float32).reshape(-1)
    return row


def _resolve_image(images: Path | None, name: str, row: int, codes_path: Path) -> Path:
    p = Path(name)
    candidates = ([images / p.name] if images is not None else []) + [p]
    if images is not None and not p.is_absolute():
        candidates.append(images / p)
    for c in candidates:
        if c.is_file():
            return c
    where = f" in --images {images}" if images is not None else ""
    raise DreError(f"--codes {codes_path}, row {row} (0-based): image {name!r} not found{where}")


def _load_image(path: Path, size: int) -> tuple[bytes, float]:
    """PNG bytes of the image at ``size``² and the pixel scale applied (1.0 when stored as-is).

    The pixels are the ones `dre extract` found the landmarks on and `dre edit` feeds the model: the
    photo read by `dre align`'s loader, upright (EXIF orientation applied; CMYK, 16-bit, palette and
    alpha converted alike). An upright RGB PNG of the right size is stored byte for byte (no re-encode,
    exact). Anything else is converted and, if needed, resized by PIL (which rounds to uint8, never
    truncates).
    """
    try:
        with Image.open(path) as im:
            verbatim = (im.format == "PNG" and im.mode == "RGB" and im.size == (size, size)
                        and im.getexif().get(_ORIENTATION, 1) == 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise DreError(f"{path}: cannot read the image ({exc})") from None
    if verbatim:
        return path.read_bytes(), 1.0
    try:
        rgb = load_rgb(path).image
    except ImageLoadError as exc:
        raise DreError(f"{path}: cannot read the image ({exc.message})") from None
    w, h = rgb.size
    if w != h:
        raise DreError(f"{path}: aligned images must be square, this one is {w}x{h}")
    if w != size:
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    rgb.save(buf, format="PNG", compress_level=6)
    return buf.getvalue(), size / w


# ------------------------------------------------------------------ the stage
def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(cfg: PackConfig, face_model: Renderer | None = None) -> PackResult:
    """``dre pack``: pack from codes (:func:`pack_album`) or convert a legacy LMDB (:func:`import_legacy`).

    SIGTERM (what Snakemake and SLURM send) is turned into KeyboardInterrupt meanwhile, so the atomic
    build removes its temporary folder instead of leaving it behind.
    """
    cfg.validate()
    with handling(_interrupt, "SIGTERM"):
        if cfg.import_legacy is not None:
            return import_legacy(cfg)
        return pack_album(cfg, face_model)


# ------------------------------------------------------------------ packing from codes


def pack_album(cfg: PackConfig, face_model: Renderer | None = None) -> PackResult:
    """Render every ``ok`` row of the codes table and write the LMDB + manifest (atomically)."""
    t0 = time.perf_counter()
    claim_outputs(cfg)
    codes_path = Path(cfg.codes)  # type: ignore[arg-type]  # run() validated cfg: codes are given
    df, codes_meta = CODES.read(codes_path, flag="--codes")
    ok = df[df["status"] == "ok"]
    skipped = len(df) - len(ok)
    if skipped:
        log.warning("%s: skipping %d row(s) whose status is not 'ok'", codes_path, skipped)
    if len(ok) == 0:
        raise DreError(f"--codes {codes_path}: no row has status 'ok'; nothing to pack")
    rows = [int(r) for r in np.flatnonzero((df["status"] == "ok").to_numpy())]  # 0-based, as pandas shows them
    paths = [_resolve_image(cfg.images, str(name), row, codes_path) for name, row in zip(ok["image"], rows)]
    try:
        all_codes, all_tform = FlameCodes.from_frame(ok)
    except ValueError as exc:
        raise DreError(f"--codes {codes_path}: {exc}") from None

    mean_shape: np.ndarray | None = None
    if cfg.mean_shape:
        mean_shape = all_codes.shape.double().mean(dim=0).float().numpy()
        log.info("mean shape over %d images (norm %.4f)", len(ok), float(np.linalg.norm(mean_shape)))

    device = resolve_device(cfg.device)
    if face_model is None:
        if cfg.assets is None:
            raise DreError("dre pack needs --assets (FLAME, texture space, head template) to render buffers")

        face_model = FaceModel.from_assets(cfg.assets, device)
    extract_assets = dict(codes_meta.get("assets") or {})
    for name, digest in face_model.checksums.items():
        if name in extract_assets and extract_assets[name] != digest:
            log.warning("%s differs from the file the codes were extracted with (checksum mismatch)", name)
    synthetic = bool(face_model.synthetic or codes_meta.get("synthetic", False))
    if synthetic:
        warn_synthetic("pack")

    n = len(ok)
    manifest_rows: list[dict[str, Any]] = []
    flat_all = all_codes.flat().numpy()
    pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
    try:
        with build_lmdb(cfg.out, inputs=[cfg.images, cfg.codes, cfg.assets]) as builder:
            starts = list(range(0, n, cfg.batch_size))
            pending = pool.map(lambda p: _load_image(p, cfg.size), paths[starts[0] : starts[0] + cfg.batch_size])
            for bi, start in enumerate(starts):
                stop = min(start + cfg.batch_size, n)
                loaded = list(pending)
                if bi + 1 < len(starts):  # read the next batch while this one renders
                    nxt = starts[bi + 1]
                    pending = pool.map(lambda p: _load_image(p, cfg.size), paths[nxt : nxt + cfg.batch_size])
                scale = torch.tensor([s for _, s in loaded], dtype=torch.float32)
                tform = all_tform[start:stop].clone()
                tform[:, :, :2] /= scale[:, None, None]  # aligned px were rescaled by `scale`
                codes = all_codes.index(slice(start, stop))
                if mean_shape is not None:
                    codes.shape = torch.from_numpy(mean_shape)[None].expand(stop - start, -1).clone()
                with torch.no_grad():
                    bufs = face_model.render(codes.to(device), tform.to(device), image_size=cfg.size)
                    cond = bufs.condition().to(torch.float16).cpu().numpy()
                if cond.shape != (stop - start, 9, cfg.size, cfg.size):
                    raise RuntimeError(f"renderer returned {cond.shape}, expected {(stop - start, 9, cfg.size, cfg.size)}")
                records = []
                for k in range(stop - start):
                    i = start + k
                    where = f"{paths[i]} (sample {i})"
                    rec = schema.encode_buffers(cond[k], where)
                    box = schema.decode_buffer_box(rec, where)[0]
                    records += [
                        (schema.sample_key(i, "image"), loaded[k][0]),
                        (schema.sample_key(i, "buffers"), rec),
                        (schema.sample_key(i, "codes"), schema.encode_codes(flat_all[i], tform[k].numpy())),
                        (schema.sample_key(i, "source"), paths[i].name.encode("utf-8")),
                    ]
                    parts = dict(zip(CODE_ORDER, np.split(flat_all[i], np.cumsum([CODE_DIMS[c] for c in CODE_ORDER])[:-1])))
                    parts["tform"] = tform[k].numpy()
                    manifest_rows.append(_manifest_row(i, str(paths[i]), paths[i].stem, box, parts))
                builder.put(records)
                done = stop
                if bi % 10 == 0 or done == n:
                    dt = time.perf_counter() - t0
                    log.info("packed %d/%d images (%.1f images/s)", done, n, done / max(dt, 1e-9))
            meta = schema.make_meta(
                count=n,
                image_size=cfg.size,
                extractor=str(codes_meta.get("extractor") or (ok["extractor"].iloc[0] if "extractor" in ok else "unknown")),
                assets=dict(face_model.checksums),
                synthetic=synthetic,
                source_hash=sha256_file(codes_path),
                mean_shape=None if mean_shape is None else mean_shape.tolist(),
                has_codes=True,
                extra={"extract_assets": extract_assets, "skipped": skipped, "source": str(codes_path)},
            )
            if mean_shape is not None:
                np.save(builder.folder / MEAN_SHAPE_FILE, mean_shape.astype(np.float32))
            builder.write_meta(meta)
        MANIFEST.write(cfg.manifest_path(), manifest_rows, meta)  # published after the LMDB it describes
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    dt = time.perf_counter() - t0
    log.info("wrote %s: %d samples in %.1f s (%.1f images/s)", cfg.out, n, dt, n / max(dt, 1e-9))
    return PackResult(Path(cfg.out), cfg.manifest_path(), n, skipped, dt, synthetic)


# ------------------------------------------------------------------ legacy import


def import_legacy(cfg: PackConfig) -> PackResult:
    """Convert an original DiffusionRig LMDB (safely unpickled) into a dre LMDB + manifest."""
    t0 = time.perf_counter()
    assert cfg.import_legacy is not None
    claim_outputs(cfg)
    old = LegacyLmdb(cfg.import_legacy)
    manifest_rows: list[dict[str, Any]] = []
    image_size: int | None = None
    try:
        mean_shape = old.mean_shape()
        with build_lmdb(cfg.out, inputs=[cfg.import_legacy]) as builder:
            batch: list[tuple[bytes, bytes]] = []
            for i in range(old.length):
                png, cond = old.sample(i)
                where = f"{old.path} sample {i}"
                try:
                    with Image.open(io.BytesIO(png)) as im:
                        im.load()
                        if im.format != "PNG" or im.mode != "RGB":
                            buf = io.BytesIO()
                            im.convert("RGB").save(buf, format="PNG")
                            png = buf.getvalue()
                        w, h = im.size
                except (OSError, ValueError) as exc:
                    raise DreError(f"{where}: image_{i:06d} is not a readable image ({exc})") from None
                if w != h or cond.shape[1:] != (h, w):
                    raise DreError(f"{where}: image {w}x{h} and buffers {cond.shape[1:]} do not match")
                if image_size is None:
                    image_size = w
                elif w != image_size:
                    raise DreError(f"{where}: image size {w} differs from sample 0's {image_size}")
                rec = schema.encode_buffers(cond, where)
                batch += [
                    (schema.sample_key(i, "image"), png),
                    (schema.sample_key(i, "buffers"), rec),
                    (schema.sample_key(i, "source"), f"image_{i:06d}".encode()),
                ]
                box = schema.decode_buffer_box(rec, where)[0]
                manifest_rows.append(_manifest_row(i, f"{old.path}#image_{i:06d}", f"image_{i:06d}", box, None))
                if len(batch) >= 3 * 64:
                    builder.put(batch)
                    batch = []
                if (i + 1) % 1000 == 0:
                    dt = time.perf_counter() - t0
                    log.info("imported %d/%d samples (%.1f samples/s)", i + 1, old.length, (i + 1) / max(dt, 1e-9))
            builder.put(batch)
            meta = schema.make_meta(
                count=old.length,
                image_size=image_size or 0,
                extractor="deca",
                assets={},
                synthetic=False,
                source_hash=None,
                mean_shape=None if mean_shape is None else mean_shape.tolist(),
                has_codes=False,
                extra={"legacy": {"path": str(old.path), "length": old.length}, "skipped": 0, "source": str(old.path)},
            )
            if mean_shape is not None:
                np.save(builder.folder / MEAN_SHAPE_FILE, mean_shape.astype(np.float32))
            builder.write_meta(meta)
        MANIFEST.write(cfg.manifest_path(), manifest_rows, meta)  # published after the LMDB it describes
    finally:
        old.close()
    dt = time.perf_counter() - t0
    log.info("imported %s → %s: %d samples in %.1f s", old.path, cfg.out, old.length, dt)
    return PackResult(Path(cfg.out), cfg.manifest_path(), old.length, 0, dt, False)
