"""Shared builders for the tests/test_data_*.py modules: face-like buffers, indexed images, codes tables."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import lmdb
import numpy as np
import torch
from PIL import Image

from dre.data import schema
from dre.data.legacy import BUFFER_NAMES, LEGACY_MEAN_SHAPE
from dre.data.store import build_lmdb
from dre.face3d.codes import CODE_DIMS, CODE_ORDER
from dre.tables import CODES


def face_like_cond(size: int, seed: int) -> np.ndarray:
    """(9,S,S) float32 buffers shaped like a render: an ellipse of plausible values, exactly 0 outside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = size * rng.uniform(0.4, 0.6), size * rng.uniform(0.4, 0.6)
    ry, rx = size * rng.uniform(0.25, 0.35), size * rng.uniform(0.2, 0.3)
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0
    nx, ny = (xx - cx) / (1.2 * rx), -(yy - cy) / (1.2 * ry)
    nz = np.sqrt(np.clip(1 - nx**2 - ny**2, 0, 1))
    albedo = np.stack([0.6 + 0.3 * np.sin(xx / 7 + k) for k in range(3)]) * rng.uniform(0.8, 1.0)
    shade = 0.2 + 0.9 * nz + 0.3 * nx  # can exceed 1 and go negative, like the unclamped render
    rendered = albedo * shade
    cond = np.concatenate([rendered, np.stack([nx, ny, nz]), albedo]).astype(np.float32)
    return cond * inside[None]


def index_image(i: int, size: int, seed: int = 0) -> np.ndarray:
    """An RGB image whose first two pixels encode ``i`` (so a loaded sample names itself)."""
    rng = np.random.default_rng(seed * 100003 + i)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    img[0, 0] = (i % 256, (i // 256) % 256, 7)
    img[0, 1] = (0, 255, 128)
    return img


def image_index(image_t) -> int:
    """Inverse of :func:`index_image` for a (3,H,W) tensor in [-1,1]."""
    px = ((image_t[:, 0, 0] + 1) * 127.5).round().to(int).tolist()
    return px[0] + 256 * px[1]


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def random_codes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n,236) codes and (n,3,3) similarity tforms with DECA-like magnitudes."""
    rng = np.random.default_rng(seed)
    flat = rng.normal(0, 0.5, (n, 236)).astype(np.float32)
    tform = np.zeros((n, 3, 3), np.float32)
    for k in range(n):
        s, a = rng.uniform(0.9, 1.2), rng.uniform(-0.1, 0.1)
        tform[k] = [[s * np.cos(a), -s * np.sin(a), rng.uniform(-20, 0)], [s * np.sin(a), s * np.cos(a), rng.uniform(-20, 0)], [0, 0, 1]]
    return flat, tform


def write_store(path: Path, images: list[np.ndarray], conds: list[np.ndarray], *, codes: np.ndarray | None = None,
                tforms: np.ndarray | None = None, mean_shape: list[float] | None = None) -> dict:  # fmt: skip
    """A dre LMDB written straight through the schema (no renderer), as pack writes it."""
    size = images[0].shape[0]
    meta = schema.make_meta(
        count=len(images), image_size=size, extractor="deca", assets={"generic_model.pkl": "00"}, synthetic=True,
        source_hash="ab" * 32, mean_shape=mean_shape, has_codes=codes is not None,
    )  # fmt: skip
    with build_lmdb(path) as b:
        for i, (img, cond) in enumerate(zip(images, conds)):
            recs = [
                (schema.sample_key(i, "image"), png_bytes(img)),
                (schema.sample_key(i, "buffers"), schema.encode_buffers(cond, f"sample {i}")),
                (schema.sample_key(i, "source"), f"img_{i:03d}.png".encode()),
            ]
            if codes is not None:
                recs.append((schema.sample_key(i, "codes"), schema.encode_codes(codes[i], tforms[i])))
            b.put(recs)
        b.write_meta(meta)
    return meta


def write_codes_table(path: Path, image_dir: Path, n: int, size: int, *, seed: int = 0, bad_rows: tuple[int, ...] = (),
                      flat: np.ndarray | None = None, tform: np.ndarray | None = None,
                      synthetic: bool = True, assets: dict[str, str] | None = None,
                      ) -> tuple[np.ndarray, np.ndarray, list[Path]]:  # fmt: skip
    """Aligned PNGs + a codes table as `dre extract` writes it (dre.tables.CODES)."""
    if flat is None or tform is None:
        flat, tform = random_codes(n, seed)
    image_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = image_dir / f"face_{i:03d}.png"
        Image.fromarray(index_image(i, size, seed)).save(p)
        paths.append(p)
    cols: dict[str, list] = {"image": [str(p) for p in paths], "stem": [p.stem for p in paths]}
    cols["status"] = ["no_face" if i in bad_rows else "ok" for i in range(n)]
    cols["message"] = ["" if i not in bad_rows else "no face found" for i in range(n)]
    start = 0
    for name in CODE_ORDER:
        d = CODE_DIMS[name]
        cols[name] = [None if i in bad_rows else flat[i, start : start + d].tolist() for i in range(n)]
        start += d
    cols["tform"] = [None if i in bad_rows else tform[i].reshape(-1).tolist() for i in range(n)]
    cols["extractor"] = ["emoca"] * n
    assets = {"generic_model.pkl": "11"} if assets is None else assets
    CODES.write(path, cols, {"extractor": "emoca", "assets": assets, "synthetic": synthetic, "image_size": size})
    return flat, tform, paths


def renderable_codes(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """DECA-like codes that put the (synthetic) head in frame: cam scale 9, small shape/exp, lit from the front."""
    rng = np.random.default_rng(seed)
    flat = np.zeros((n, 236), np.float32)
    flat[:, :100] = rng.normal(0, 1.0, (n, 100))  # shape: different per image, so the mean-shape swap shows
    flat[:, 100:150] = rng.normal(0, 0.5, (n, 50))  # tex
    flat[:, 150:200] = rng.normal(0, 0.3, (n, 50))  # exp
    flat[:, 200:203] = rng.normal(0, 0.1, (n, 3))  # global pose
    flat[:, 206:209] = [9.0, 0.0, 0.0]  # cam s, tx, ty
    light = np.zeros((n, 9, 3), np.float32)
    light[:, 0] = 3.0
    light[:, 3] = 0.5  # n_z term: front light
    flat[:, 209:] = light.reshape(n, 27)
    k = 224.0 / size
    tform = np.tile(np.diag([k, k, 1.0]).astype(np.float32), (n, 1, 1))
    return flat, tform


def write_legacy_lmdb(path: str | os.PathLike[str], images_png: list[bytes], conds: list[np.ndarray],
                      mean_shape: np.ndarray | None = None) -> None:  # fmt: skip
    """Write an LMDB in the original DiffusionRig layout (for tests and the side-by-side benchmark).

    ``conds`` are (9,H,W) float arrays in the order rendered, normal, albedo; each buffer is stored as
    ``pickle.dumps`` of a float32 CPU tensor, one write transaction per sample and ``length`` last, as
    the original writer does (but with a sized map instead of 1 TiB).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    per_sample = max((c.size * 4 + len(p) for p, c in zip(images_png, conds)), default=0)
    env = lmdb.open(str(path), map_size=max(1 << 20, 2 * per_sample * (len(conds) + 1) + (1 << 20)), readahead=False)
    try:
        for i, (png, cond) in enumerate(zip(images_png, conds)):
            with env.begin(write=True) as txn:
                txn.put(f"image_{i:06d}".encode(), png)
                for k, name in enumerate(BUFFER_NAMES):
                    t = torch.from_numpy(np.ascontiguousarray(cond[3 * k : 3 * k + 3], dtype=np.float32)).clone()
                    txn.put(f"{name}_{i:06d}".encode(), pickle.dumps(t))
        with env.begin(write=True) as txn:
            txn.put(b"length", str(len(conds)).encode())
    finally:
        env.close()
    if mean_shape is not None:
        t = torch.as_tensor(np.asarray(mean_shape, np.float32).reshape(1, -1))
        (path / LEGACY_MEAN_SHAPE).write_bytes(pickle.dumps(t))
