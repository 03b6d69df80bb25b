"""FLAME layer throughput: ours (vertices + 68 dynamic/static + 68 full landmarks) vs smplx's ``lbs``
(vertices only), side by side in one run, on a FLAME-2020-sized random model (5023 vertices) and on the
synthetic assets' model.

    PYTHONPATH=. python bench/bench_face3d_flame.py [--batch 64] [--device cpu|cuda] [--repeats 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dre.face3d.flame import FlameModel, load_flame
from dre.face3d.flame import Flame


def flame_sized_model(seed: int = 0) -> FlameModel:
    """Random arrays with FLAME 2020's sizes (timing only; the geometry is meaningless)."""
    rng = np.random.default_rng(seed)
    v, f = 5023, 9976
    w = rng.random((v, 5)).astype(np.float32)
    jr = rng.random((5, v)).astype(np.float32)
    return FlameModel(
        v_template=rng.standard_normal((v, 3)).astype(np.float32) * 0.1,
        shapedirs=rng.standard_normal((v, 3, 400)).astype(np.float32) * 1e-3,
        posedirs=rng.standard_normal((v, 3, 36)).astype(np.float32) * 1e-3,
        J_regressor=jr / jr.sum(1, keepdims=True),
        weights=w / w.sum(1, keepdims=True),
        parents=np.array([-1, 0, 1, 1, 1]),
        faces=rng.integers(0, v, (f, 3)),
    )


def timed_pair(fa, fb, repeats: int, device: torch.device) -> tuple[float, float]:
    """Best-of-``repeats`` seconds per call of ``fa`` and ``fb``, interleaved so that load on a shared
    machine hits both alike."""

    def once(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    fa(), fb()  # warm-up
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(once(fa))
        tb.append(once(fb))
    return min(ta), min(tb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    from smplx.lbs import lbs as smplx_lbs

    from dre.face3d.flame import load_landmark_embedding
    from dre.face3d.synth import write_synthetic_assets

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_assets(Path(tmp) / "assets")
        synth = load_flame(root / "generic_model.pkl")
        emb = load_landmark_embedding(root / "landmark_embedding.npy")
    big = flame_sized_model()
    # the synthetic embedding's face ids are valid for the 5023-vertex model too (ids < 3744 < 9976)
    rows = []
    for name, model in (("FLAME-sized (5023 v)", big), (f"synthetic ({synth.n_vertices} v)", synth)):
        flame = Flame(model, emb).to(device)
        g = torch.Generator().manual_seed(0)
        shape = torch.randn(args.batch, 100, generator=g).to(device)
        exp = torch.randn(args.batch, 50, generator=g).to(device)
        pose = (torch.randn(args.batch, 6, generator=g) * 0.2).to(device)
        full = Flame.full_pose(pose)
        betas = torch.cat([shape, exp], 1)
        parents = torch.as_tensor(model.parents, device=device)
        with torch.inference_mode():
            t_ours, t_ref = timed_pair(
                lambda: flame(shape, exp, pose),
                lambda: smplx_lbs(
                    betas, full, flame.v_template, flame.shapedirs, flame.posedirs, flame.J_regressor, parents,
                    flame.lbs_weights,
                ),
                args.repeats,
                device,
            )
        rows.append((name, args.batch / t_ours, args.batch / t_ref, t_ref / t_ours))
    print(f"FLAME forward, batch {args.batch}, device {device}, torch threads {torch.get_num_threads()}, best of {args.repeats}")
    print(f"{'model':24s} {'ours faces/s':>14s} {'smplx lbs faces/s':>18s} {'ours/smplx':>11s}")
    for name, a, b, r in rows:
        print(f"{name:24s} {a:14.0f} {b:18.0f} {r:11.2f}")
    print("(ours also computes 2 x 68 landmarks incl. the dynamic contour; smplx lbs computes vertices only)")


if __name__ == "__main__":
    main()
