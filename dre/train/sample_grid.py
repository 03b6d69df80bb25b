"""Sample grids: rows of image batches in [-1, 1] tiled into one PNG (written atomically), and the grid
training writes every ``--sample-every`` steps (DDIM samples of a fixed batch from fixed noise)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from dre.diffusion import ddim_sample, space_timesteps
from dre.errors import DreError
from dre.model.precision import Precision
from dre.train.config import TrainConfig
from dre.train.ema import EMA
from dre.train.loss_log import MetricsWriter
from dre.train.shards import derive_seed
from dre.safety.atomic import atomic_path


def grid_array(rows: Sequence[torch.Tensor], pad: int = 2) -> np.ndarray:
    """(H_total, W_total, 3) uint8: one row per batch (B,3,H,W) in [-1, 1], B columns, white gutters."""
    b = max(r.shape[0] for r in rows)
    h, w = rows[0].shape[-2:]
    out = np.full((len(rows) * (h + pad) + pad, b * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        img = ((row.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        img = img.permute(0, 2, 3, 1).numpy()
        for j in range(img.shape[0]):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y: y + h, x: x + w] = img[j]
    return out


def grid_respacing(steps: int) -> str:
    """DDIM-20 (as the published inference) where the schedule allows it, else up to 20 even steps."""
    try:
        space_timesteps(steps, "ddim20")
        return "ddim20"
    except DreError:
        return str(min(20, steps))


@torch.no_grad()
def write_training_grid(cfg: TrainConfig, model: nn.Module, ema: EMA | None, diffusion: Any,
                        fixed: tuple[torch.Tensor, torch.Tensor], step: int, run_dir: Path,
                        metrics: MetricsWriter | None, device: torch.device, precision: Precision) -> Path:
    """DDIM samples of a fixed batch from fixed noise (EMA weights when kept): input | buffer | sample rows.

    Runs under a forked RNG and in eval mode, so it changes nothing the training trajectory depends on.
    """
    net = model
    if ema is not None:
        net = copy.deepcopy(model)
        net.load_state_dict(ema.shadow)  # copy_ casts the fp32 average to the model's dtypes
    was_training = {m: m.training for m in net.modules()}
    net.eval()
    x0, cond = fixed
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            g = torch.Generator(device=device).manual_seed(derive_seed(cfg.seed, "grid"))
            noise = torch.randn(x0.shape, generator=g, device=device)
            with precision.autocast():
                z = net.encode(x0)

                def model_fn(x_t: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
                    return net(x_t, tt, cond, latent=z)

                respacing = grid_respacing(cfg.diffusion.steps)
                sample = ddim_sample(diffusion, model_fn, noise, respacing=respacing, eta=0.0)
    finally:
        for m, flag in was_training.items():
            m.train(flag)
    grid = grid_array([x0, cond[:, :3] * 2 - 1, sample.float()])
    path = run_dir / "samples" / f"step-{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    if metrics is not None:
        metrics.add_image("samples", grid.transpose(2, 0, 1), step)
    return path
