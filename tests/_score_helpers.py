"""Scoring fixtures: a rendered synthetic album + target (real FLAME render, real landmarks) and edit folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

EDIT_SIZE = 64
"""Edited pictures are model-sized (the demo's 64²); sources and target are aligned at 160²."""


def make_scene(root: Path, assets: Path, n_sources: int = 3) -> tuple[Path, Path]:
    """(aligned source folder, aligned target folder), each with an align.parquet, rendered from the
    synthetic FLAME so that the landmarks are exact and the face detector finds the faces."""
    import torch

    from dre.face3d.face_model import FaceModel
    from tests import face3d_album as fa

    torch.manual_seed(0)
    fm = FaceModel.from_assets(assets, "cpu")
    src, tgt = root / "album", root / "target"
    fa.make_album(src, fm, n=n_sources, seed=1)
    fa.make_album(tgt, fm, n=1, seed=7)
    return src, tgt


def load_rgb(path: Path, size: int = EDIT_SIZE) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(im)


def write_edit_folder(folder: Path, pictures: dict[str, np.ndarray], *, sources: Path, target: Path,
                      source_extractor: str = "deca", target_extractor: str = "deca", table: bool = True) -> Path:
    """An edit folder as `dre edit` lays it out: ``<stem>_<mode>.png`` (+ edit.parquet when ``table``)."""
    folder.mkdir(parents=True)
    rows = []
    tgt_png = sorted(target.glob("*.png"))[0]
    for name, pic in pictures.items():
        Image.fromarray(pic).save(folder / f"{name}.png")
        stem, _, mode = name.rpartition("_")
        rows.append({"source": str(sources / f"{stem}.png"), "source_stem": stem, "target": str(tgt_png),
                     "mode": mode, "file": f"{name}.png", "source_extractor": source_extractor,
                     "target_extractor": target_extractor, "synthetic": True})
    if table:
        from dre.face3d.codes import CODE_DIMS
        from dre.tables import DRAW_COLUMNS, EDIT, EDIT_FILE, RIG_COLUMNS, SCORE_COLUMNS

        full = [{**r, "seed": 0, "noise_seed": None, "init": "inversion", "steps": 20, "eta": 0.0, "model": "model.pt",
                 "mean_shape": False, "buffers": "", **{c: [0.0] * n for c, n in CODE_DIMS.items()},
                 **{c: None for c, _ in (*RIG_COLUMNS, *DRAW_COLUMNS, *SCORE_COLUMNS)}} for r in rows]
        meta = {"modes": sorted({r["mode"] for r in rows}), "sources": sorted({r["source"] for r in rows}),
                "target": str(tgt_png), "seed": 0, "init": "inversion", "steps": 20, "eta": 0.0, "model": "model.pt",
                "source_extractor": source_extractor, "target_extractor": target_extractor, "synthetic": True,
                "sequences": []}
        EDIT.write(folder / EDIT_FILE, full, meta)
    return folder


def noise_picture(seed: int, size: int = EDIT_SIZE) -> np.ndarray:
    """Pure Gaussian noise as a sampler that never denoised would leave it (std 0.5 of the range)."""
    rng = np.random.default_rng(seed)
    return np.clip(127.5 + 127.5 * rng.standard_normal((size, size, 3)), 0, 255).astype(np.uint8)


def half_noised(picture: np.ndarray, seed: int) -> np.ndarray:
    """Half signal, half noise in variance: x·√½ + ε·√½ (DDIM's x_t when ᾱ_t = ½), in pixels."""
    rng = np.random.default_rng(seed)
    x = picture.astype(np.float64) / 127.5 - 1.0
    y = np.sqrt(0.5) * x + np.sqrt(0.5) * rng.standard_normal(picture.shape)
    return np.clip((y + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
