"""The album runner behind ``dre extract`` (:func:`run`): aligned images → one codes.parquet row each.

Landmarks come from the album's ``align.parquet`` (the aligned 68 points ``dre align`` already found), so
nothing is detected twice. Without a report, a DECA-style sidecar ``<stem>.txt`` (68 lines "x y") next
to each image is used. As in ``dre align``, one bad file never stops the run: it gets a status
(``missing``, ``unreadable``, ``no_landmarks``, ``bad_landmarks``) and a message; the command fails only
when no image at all could be encoded.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dre.align.backends import NoLandmarks
from dre.align.imageio import ImageLoadError, load_rgb
from dre.align.sidecar import read_sidecar, sidecar_candidates
from dre.errors import DreError
from dre.extract.config import ExtractConfig
from dre.face3d.codes import CODE_ORDER
from dre.face3d.extractor import Extractor
from dre.safety.ownership import claim_table
from dre.tables import ALIGN, ALIGN_FILE, CODES
from dre.utils.device import resolve_device
from dre.utils.images import list_images
from dre.utils.synthetic import warn_synthetic

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One image to encode (one output row)."""

    image: Path
    landmarks: np.ndarray | None  # (68, 2) in the image's pixels
    status: str = "ok"
    message: str = ""


@dataclass
class ExtractReport:
    out: Path
    counts: Counter = field(default_factory=Counter)
    synthetic: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{n} {s}" for s, n in sorted(self.counts.items(), key=lambda kv: (kv[0] != "ok", kv[0]))]
        return ", ".join(parts) + f" in {self.seconds:.1f} s"


# ------------------------------------------------------------------------------------------- inputs
def _landmarks(value: object) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        return None
    return arr


def items_from_report(report: Path) -> list[Item]:
    """Rows of align.parquet with an aligned image; the report's folder anchors relative outputs."""
    df, _ = ALIGN.read(report, columns=("status", "output", "aligned_landmarks"))
    items = []
    for i, row in enumerate(df.itertuples(index=False)):
        if row.status != "ok" or row.output is None or (isinstance(row.output, float) and np.isnan(row.output)):
            continue  # no aligned image for this input (its align status says why)
        path = Path(row.output)
        if not path.is_absolute():
            path = report.parent / path
        lm = _landmarks(row.aligned_landmarks)
        item = Item(path, None)
        if lm is None:
            item.status, item.message = "no_landmarks", f"{report}, row {i}: no aligned_landmarks"
        elif lm.size != 136:
            item.status, item.message = "bad_landmarks", f"{report}, row {i}: {lm.size} landmark values, expected 136"
        else:
            item.landmarks = lm.reshape(68, 2)
        items.append(item)
    return items


def items_from_folder(folder: Path) -> list[Item]:
    """Every image of ``folder`` (sorted) with its landmark sidecar (DECA's ``<stem>.txt``, or ``.npy``: the
    files ``dre align --backend sidecar`` reads, through the same reader), if any."""
    items = []
    for path in list_images(folder):
        side = next((c for c in sidecar_candidates(path) if c.is_file()), None)
        if side is None:
            items.append(
                Item(path, None, "no_landmarks", f"no {ALIGN_FILE} in {folder} and no landmark file "
                     f"{path.with_suffix('.txt').name}; run `dre align` (or `dre align --already-aligned`) first")
            )
            continue
        try:
            faces = read_sidecar(side)
        except NoLandmarks as exc:
            items.append(Item(path, None, "bad_landmarks", f"{folder}: {exc.message}"))
            continue
        if len(faces) != 1:
            items.append(Item(path, None, "bad_landmarks", f"{side}: {len(faces)} faces; an aligned image has one"))
            continue
        items.append(Item(path, faces[0].astype(np.float64)))
    return items


def check_landmarks(item: Item) -> None:
    """Mark landmarks that cannot give a DECA crop (non-finite, or an empty box)."""
    if item.status != "ok" or item.landmarks is None:
        return
    lm = item.landmarks
    if not np.isfinite(lm).all():
        item.status, item.message = "bad_landmarks", f"{item.image.name}: landmarks are not finite"
        return
    span = (lm.max(0) - lm.min(0)).sum() / 2 * 1.1 * 1.25
    if span < 1:
        item.status, item.message = "bad_landmarks", f"{item.image.name}: landmarks span {span:.2f} px; no crop box"


def read_image(item: Item) -> np.ndarray | None:
    """RGB uint8 (H, W, 3) read by `dre align`'s loader (upright, CMYK/16-bit/palette converted alike: an
    already aligned album's landmarks are in those pixels, and `dre pack` stores them), or None with the
    item's status set."""
    if not item.image.is_file():
        item.status, item.message = "missing", f"{item.image}: file not found"
        return None
    try:
        return load_rgb(item.image).array
    except ImageLoadError as exc:
        item.status, item.message = "unreadable", f"{item.image}: {exc.message}"
        return None


# ------------------------------------------------------------------------------------------- output
def write_codes_parquet(dest: Path, items: list[Item], rows: dict[int, dict], meta: dict) -> None:
    """The codes table (:data:`dre.tables.CODES`): one row per item, codes only where encoded."""
    cols: dict[str, list] = {name: [] for name in CODES.names}
    for i, it in enumerate(items):
        cols["image"].append(str(it.image))
        cols["stem"].append(it.image.stem)
        cols["status"].append(it.status)
        cols["message"].append(it.message)
        cols["extractor"].append(meta["extractor"])
        row = rows.get(i)
        for name in (*CODE_ORDER, "tform"):
            cols[name].append(None if row is None else row[name])
    CODES.write(dest, cols, meta)


# ------------------------------------------------------------------------------------------- runner
def _encode_batch(ext, items: list[Item], batch: list[int], decoded: list, rows: dict[int, dict], sizes: Counter) -> None:
    idx = [i for i, img in zip(batch, decoded) if img is not None]
    images = [img for img in decoded if img is not None]
    if not idx:
        return
    crops, tform = ext.crop(images, [items[i].landmarks for i in idx])
    cols = ext.encode(crops).to_columns()
    tf = tform.detach().cpu().numpy().reshape(-1, 9).astype(np.float32)
    for k, i in enumerate(idx):
        rows[i] = {name: cols[name][k] for name in cols} | {"tform": tf[k]}
        sizes[max(images[k].shape[:2])] += 1


def run(cfg: ExtractConfig, extractor: Extractor | None = None) -> ExtractReport:
    """Encode every aligned image of ``cfg.images`` and write ``cfg.out``.

    ``extractor``: an already loaded :class:`~dre.face3d.extractor.Extractor` of kind ``cfg.extractor``
    (tests and notebooks reuse one); by default it is loaded from ``cfg.assets``.
    """
    cfg.validate()
    claim_table(cfg.out, inputs=[cfg.images, cfg.align_report, cfg.assets])
    t0 = time.perf_counter()
    report_path = cfg.align_report or cfg.images / ALIGN_FILE
    items = items_from_report(report_path) if report_path.is_file() else items_from_folder(cfg.images)
    if not items:
        where = report_path if report_path.is_file() else cfg.images
        raise DreError(f"{where}: no aligned images to extract (did `dre align` keep any face?)")
    for it in items:
        check_landmarks(it)

    if extractor is None:
        ext = Extractor.from_assets(cfg.assets, cfg.extractor, resolve_device(cfg.device), emoca_model=cfg.emoca_model)
    elif extractor.kind != cfg.extractor:
        raise ValueError(f"an {extractor.kind} extractor was passed for --extractor {cfg.extractor}")
    else:
        ext = extractor
    if ext.synthetic:
        warn_synthetic("dre extract")

    rows: dict[int, dict] = {}
    sizes: Counter = Counter()
    todo = [i for i, it in enumerate(items) if it.status == "ok"]
    batches = [todo[a : a + cfg.batch_size] for a in range(0, len(todo), cfg.batch_size)]
    pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))  # PNG decoding frees the GIL
    try:
        pending = pool.map(lambda i: read_image(items[i]), batches[0]) if batches else iter(())
        for b, batch in enumerate(batches):
            decoded = list(pending)
            if b + 1 < len(batches):  # decode the next batch while this one is encoded
                pending = pool.map(lambda i: read_image(items[i]), batches[b + 1])
            _encode_batch(ext, items, batch, decoded, rows, sizes)
            log.info("extract: %d/%d images encoded", len(rows), len(todo))
    finally:
        pool.shutdown(wait=True)

    counts = Counter(it.status for it in items)
    if not rows:
        detail = "; ".join(f"{it.image.name}: {it.status} ({it.message})" for it in items[:20])
        raise DreError(f"dre extract: no image of {cfg.images} could be encoded — {detail}")
    meta = {
        "extractor": cfg.extractor,
        "emoca_model": cfg.emoca_model if cfg.extractor == "emoca" else None,
        "assets": ext.checksums,
        "synthetic": ext.synthetic,
        "image_size": int(sizes.most_common(1)[0][0]),
        "counts": dict(counts),
        "torch": torch.__version__,
    }
    write_codes_parquet(cfg.out, items, rows, meta)
    return ExtractReport(out=cfg.out, counts=counts, synthetic=ext.synthetic, seconds=time.perf_counter() - t0)
