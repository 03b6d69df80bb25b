"""Inputs for the edit tests: aligned folders with align.parquet, codes tables, tiny model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dre.tables import ALIGN, ALIGN_FILE, CODES

ALIGNED = 64  # aligned photo size; the model runs at MODEL_SIZE, so the resize path is exercised too
MODEL_SIZE = 32
STEPS = 3


def landmarks68(size: int, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A plausible FFHQ-aligned 68-point layout (iBUG order), in pixels of a size² image."""
    # jaw: lower half-ellipse from ear to ear through the chin (image y grows downwards)
    pts = [(0.5 + 0.26 * np.cos(a), 0.48 + 0.36 * np.sin(a)) for a in np.linspace(np.pi, 0, 17)]
    pts += [(x, 0.38) for x in np.linspace(0.30, 0.45, 5)] + [(x, 0.38) for x in np.linspace(0.55, 0.70, 5)]
    pts += [(0.5, y) for y in np.linspace(0.45, 0.58, 4)] + [(x, 0.62) for x in np.linspace(0.45, 0.55, 5)]
    for cx in (0.38, 0.62):
        pts += [(cx + 0.05 * np.cos(a), 0.47 + 0.02 * np.sin(a)) for a in np.linspace(np.pi, -np.pi, 6, endpoint=False)]
    pts += [(0.5 + 0.10 * np.cos(a), 0.72 + 0.04 * np.sin(a)) for a in np.linspace(np.pi, -np.pi, 12, endpoint=False)]
    pts += [(0.5 + 0.06 * np.cos(a), 0.72 + 0.02 * np.sin(a)) for a in np.linspace(np.pi, -np.pi, 8, endpoint=False)]
    arr = np.asarray(pts, dtype=np.float32)
    assert arr.shape == (68, 2)
    return (arr + np.asarray(shift, np.float32)) * size


def smooth_image(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.integers(40, 220, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC))


def write_aligned(folder: Path, stems: list[str], seed: int, status: dict[str, str] | None = None) -> None:
    folder.mkdir(parents=True)
    rows = []
    for k, stem in enumerate(stems):
        st = (status or {}).get(stem, "ok")
        ok = st == "ok"
        if ok:
            Image.fromarray(smooth_image(ALIGNED, seed + k)).save(folder / f"{stem}.png")
        lm = landmarks68(ALIGNED, (0.01 * k, -0.01 * k))
        rows.append({
            "source": f"/raw/{stem}.jpg", "face_index": 0 if ok else -1, "status": st,
            "message": "" if ok else "no face detected",
            "landmarks": lm.reshape(-1).tolist() if ok else None,
            "aligned_landmarks": lm.reshape(-1).tolist() if ok else None,
            "quad": None, "confidence": 1.0 if ok else 0.0, "backend": "sidecar",
            "output": f"{stem}.png" if ok else None,
        })
    meta = {"backend": "sidecar", "size": ALIGNED, "already_aligned": True, "multi_face": "largest",
            "min_face": 0.0, "transform_size": 4 * ALIGNED}
    ALIGN.write(folder / ALIGN_FILE, rows, meta)


def write_codes(path: Path, faces, codes, tform, extractor: str) -> None:
    cols = codes.to_columns()
    rows = []
    for k, f in enumerate(faces):
        row = {"image": str(f.path), "stem": f.stem, "status": "ok", "message": "", "extractor": extractor}
        row.update({name: cols[name][k].tolist() for name in cols})
        row["tform"] = tform[k].reshape(-1).tolist()
        rows.append(row)
    CODES.write(path, rows, {"extractor": extractor, "assets": {}, "synthetic": True, "image_size": ALIGNED})


def write_model(path: Path, *, extractor: str = "deca", mean_shape=None, seed: int = 0) -> None:
    import torch

    from dre.diffusion import DiffusionConfig
    from dre.model import DiffusionRig, ModelConfig, save_model_file

    torch.manual_seed(seed)
    cfg = ModelConfig(image_size=MODEL_SIZE, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                      attention_resolutions=(16,), latent_dim=16, dropout=0.0, norm_groups=8)
    model = DiffusionRig(cfg)
    with torch.no_grad():  # a random UNet's last conv is zero-initialised: make it say something
        for p in model.parameters():
            if p.ndim > 1 and float(p.abs().max()) == 0.0:
                p.normal_(0.0, 0.02)
    meta = {"stage": 2, "extractor": extractor, "lmdbs": [], "synthetic": True, "step": 0,
            "mean_shape": None if mean_shape is None else [float(v) for v in np.asarray(mean_shape).reshape(-1)]}
    save_model_file(path, model, cfg, DiffusionConfig(), meta)




def synthetic_codes(n: int, seed: int):
    """Codes around the synthetic encoder's bias (dre.face3d.synth.code_statistics), varied per face."""
    import torch

    from dre.face3d.codes import FlameCodes
    from dre.face3d.synth import code_statistics

    mean, std = code_statistics()
    rng = np.random.default_rng(seed)
    flat = mean[None] + std[None] * rng.standard_normal((n, mean.size))
    return FlameCodes.from_flat(torch.from_numpy(flat.astype(np.float32)))


def crop_tforms_for(faces):
    """DECA crop transforms (aligned px → 224 crop px) from the faces' landmarks, as extraction makes them."""
    import torch

    from dre.face3d.crop import crop_tforms

    lm = torch.from_numpy(np.stack([f.landmarks for f in faces]).astype(np.float64))
    return crop_tforms(lm).float()
