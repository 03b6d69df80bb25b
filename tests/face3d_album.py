"""A tiny album of synthetic-face photos with an align.parquet, made by rendering the synthetic FLAME.

The landmarks in the report are the mesh's own 68 landmarks projected exactly as the renderer projects
the vertices, so the album is self-consistent: the DECA crop built from them frames the rendered face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

IMAGE_SIZE = 160
"""Smaller than a real 256² album to keep the tests fast; nothing in extraction depends on the size."""


def random_codes(n: int, seed: int):
    """Plausible codes for the synthetic model (its DECA code statistics, narrowed)."""
    from dre.face3d.codes import FlameCodes
    from dre.face3d.synth import code_statistics

    mean, std = code_statistics()
    rng = np.random.default_rng(seed)
    flat = mean + 0.5 * std * rng.standard_normal((n, mean.size))
    return FlameCodes.from_flat(torch.from_numpy(flat.astype(np.float32)))


def image_tform(n: int, size: int = IMAGE_SIZE) -> torch.Tensor:
    """A fixed 'aligned image → crop' similarity: the size² image scaled onto the 224² crop."""
    t = torch.eye(3).repeat(n, 1, 1)
    t[:, 0, 0] = t[:, 1, 1] = 224 / size
    return t


def project_landmarks(face_model, codes, tform: torch.Tensor) -> np.ndarray:
    """(B, 68, 2) image pixels of the FLAME 2D landmarks, through DECA's camera and ``inverse(tform)``."""
    from dre.face3d.render import crop_to_image, orthographic_project

    out = face_model.flame(codes.shape, codes.exp, codes.pose)
    p = crop_to_image(orthographic_project(out.landmarks2d, codes.cam), tform, IMAGE_SIZE)
    # crop_to_image ends at x/size·2 − 1: undo the normalisation to pixels
    return ((p[..., :2] + 1) / 2 * IMAGE_SIZE).numpy()


def make_album(folder: Path, face_model, n: int = 3, seed: int = 0) -> tuple[list[Path], np.ndarray]:
    """Write ``n`` PNG photos and an align.parquet (as `dre align` would) into ``folder``."""
    from PIL import Image

    from dre.tables import ALIGN, ALIGN_FILE

    folder.mkdir(parents=True, exist_ok=True)
    codes = random_codes(n, seed)
    tform = image_tform(n)
    with torch.no_grad():
        buf = face_model.render(codes, tform, IMAGE_SIZE)
        lms = project_landmarks(face_model, codes, tform)
    img = buf.rendered.clamp(0, 1) + 0.45 * (1 - buf.alpha)  # grey background
    arr = (img.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    paths = []
    for i in range(n):
        p = folder / f"face{i:02d}.png"
        Image.fromarray(arr[i]).save(p)
        paths.append(p)
    flat = [lm.reshape(-1).tolist() for lm in lms]
    columns = {
        "source": [f"/raw/face{i:02d}.jpg" for i in range(n)],
        "face_index": [0] * n,
        "status": ["ok"] * n,
        "message": [""] * n,
        "landmarks": flat,
        "aligned_landmarks": flat,
        "quad": [None] * n,
        "confidence": [1.0] * n,
        "backend": ["sidecar"] * n,
        "output": [p.name for p in paths],
    }
    meta = {"backend": "sidecar", "size": IMAGE_SIZE, "already_aligned": True, "multi_face": "largest",
            "min_face": 0.0, "transform_size": 4 * IMAGE_SIZE}
    ALIGN.write(folder / ALIGN_FILE, columns, meta)
    return paths, lms
