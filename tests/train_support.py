"""Helpers for the training tests: tiny LMDBs written with dre.data's own writer, a tiny model config."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

TINY_MODEL = [
    "--image-size", "32", "--model-channels", "32", "--channel-mult", "1,2", "--num-res-blocks", "1",
    "--attention-resolutions", "16", "--latent-dim", "8", "--diffusion-steps", "100",
]
"""A UNet of a few hundred thousand parameters at 32² (the ResNet-18 encoder dominates the size)."""


def write_tiny_lmdb(dest: Path, n: int, size: int = 32, seed: int = 0, *, extractor: str = "deca",
                    synthetic: bool = True, mean_shape: list[float] | None = None) -> Path:
    """An LMDB of ``n`` smooth random faces-that-are-not-faces, in the schema ``dre pack`` writes."""
    from PIL import Image

    from dre.data import build_lmdb
    from dre.data import schema

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    with build_lmdb(dest) as builder:
        records: list[tuple[bytes, bytes]] = []
        for i in range(n):
            c = rng.uniform(0.2, 0.8, size=(3, 3))
            img = np.stack([c[k, 0] + c[k, 1] * xx + c[k, 2] * yy for k in range(3)], -1)
            img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
            buf = io.BytesIO()
            Image.fromarray((img * 255).round().astype(np.uint8)).save(buf, format="PNG")
            mask = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.12).astype(np.float32)
            cond = np.concatenate([img.transpose(2, 0, 1) * mask, rng.uniform(-1, 1, (3, 1, 1)) * mask,
                                   img.transpose(2, 0, 1) * 0.8 * mask]).astype(np.float32)
            records += [
                (schema.sample_key(i, "image"), buf.getvalue()),
                (schema.sample_key(i, "buffers"), schema.encode_buffers(cond, f"sample {i}")),
                (schema.sample_key(i, "source"), f"img_{i:03d}.png".encode()),
            ]
        builder.put(records)
        builder.write_meta(schema.make_meta(
            count=n, image_size=size, extractor=extractor, assets={}, synthetic=synthetic, source_hash=None,
            mean_shape=mean_shape, has_codes=False,
        ))
    return dest


def train_argv(stage: int, lmdbs: list[Path], run_dir: Path, out: Path, *extra: Any) -> list[str]:
    argv = ["train", "--stage", str(stage)]
    for p in lmdbs:
        argv += ["--lmdb", str(p)]
    argv += ["--run-dir", str(run_dir), "--out", str(out), *TINY_MODEL, "--num-workers", "0", "--device", "cpu"]
    return argv + [str(x) for x in extra]


def make_cfg(stage: int, lmdbs: list[Path], run_dir: Path, out: Path, *extra: Any):
    from dre.cli import parse_config

    return parse_config(train_argv(stage, lmdbs, run_dir, out, *extra))
