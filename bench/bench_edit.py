"""Edit throughput: sources × modes at DDIM-N, all jobs batched vs one job at a time, side by side.

    PYTHONPATH=. python bench/bench_edit.py          # CPU, demo-size model, 20 sources × 3 modes, DDIM-20
    PYTHONPATH=. python bench/bench_edit.py --device cuda --size 256 --channels 128   # the published 256² model on a GPU

Times the whole edit engine after loading (code swaps, rendering, latents, DDIM sampling) with a
randomly initialised model and synthetic assets; writing PNGs is not included. Both variants run in
the same process on the same inputs, and the pictures are checked to agree.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def build(args: argparse.Namespace):
    from dre.diffusion import DiffusionConfig, GaussianDiffusion
    from dre.edit import parse_modes
    from dre.face3d.codes import FlameCodes
    from dre.face3d.face_model import FaceModel
    from dre.model import DiffusionRig, ModelConfig
    from dre.face3d.synth import write_synthetic_assets

    device = torch.device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="bench_edit_"))
    write_synthetic_assets(tmp, seed=0)
    face = FaceModel.from_assets(tmp, device)
    torch.manual_seed(0)
    mcfg = ModelConfig(
        image_size=args.size, model_channels=args.channels, channel_mult=tuple(args.channel_mult),
        num_res_blocks=args.res_blocks, attention_resolutions=tuple(args.attention), latent_dim=64,
        encoder="resnet18", dropout=0.0,
    )
    model = DiffusionRig(mcfg).to(device).eval()
    diffusion = GaussianDiffusion(DiffusionConfig())
    g = torch.Generator().manual_seed(1)

    def codes(b: int, scale: float) -> FlameCodes:
        r = lambda *s: torch.randn(*s, generator=g) * scale  # noqa: E731
        c = FlameCodes(shape=r(b, 100), tex=r(b, 50), exp=r(b, 50), pose=r(b, 6) * 0.1, cam=r(b, 3) * 0.05,
                       light=r(b, 9, 3) * 0.3)
        c.cam[:, 0] += 9.0
        c.light[:, 0] += 3.0
        return c.to(device)

    n = args.sources
    src, tgt = codes(n, 0.5), codes(1, 0.5)
    # aligned image px → 224 crop px: the whole image maps onto the crop
    tform = torch.diag(torch.tensor([224.0 / args.size, 224.0 / args.size, 1.0])).expand(n, 3, 3).to(device)
    images = (torch.rand(n, 3, args.size, args.size, generator=g) * 2 - 1).to(device)
    target_image = (torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1).to(device)
    return face, model, diffusion, src, tgt, tform, images, target_image, parse_modes(args.modes)


def run_once(setup, batch_size: int, steps: int, seed: int) -> tuple[torch.Tensor, float]:
    from dre.edit import engine

    face, model, diffusion, src, tgt, tform, images, target_image, modes = setup
    sync = torch.cuda.synchronize if images.is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    stems = [f"s{i:03d}" for i in range(src.batch_size)]
    plan = engine.plan_edits(face, src, tform, tgt, modes, stems)
    _, edit_buf = engine.render_plan(face, plan, images.shape[-1], batch_size)
    cond = engine.as_condition(edit_buf)
    z_src = engine.encode_latents(model, images, batch_size)
    z_tgt = engine.encode_latents(model, target_image, 1)
    job_src = plan.job_sources()
    latent = torch.stack([z_tgt[0] if plan.modes[plan.job(k)[1]].swaps_latent else z_src[job_src[k]]
                          for k in range(plan.n_jobs)])
    x_T = engine.source_noise(seed, stems, tuple(images.shape[1:])).to(images.device)[job_src]
    out = engine.sample_jobs(model, diffusion, x_T, cond, latent, steps=steps, eta=0.0,
                             batch_size=batch_size, seed=seed)
    sync()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sources", type=int, default=20)
    ap.add_argument("--modes", default="exp,pose,light")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--channel-mult", type=int, nargs="+", default=[1, 2, 2])
    ap.add_argument("--res-blocks", type=int, default=1)
    ap.add_argument("--attention", type=int, nargs="*", default=[16])
    ap.add_argument("--batch-size", type=int, default=16, help="batched variant's chunk (default 16 as `dre edit`; 0 = all jobs)")
    ap.add_argument("--skip-single", action="store_true", help="only the batched variant (e.g. the 256² GPU run)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = build(args)
    n_jobs = args.sources * len(setup[-1])
    batch = args.batch_size or n_jobs
    run_once(setup, batch, 2, 0)  # warm-up (allocations, kernels)
    batched, t_b = run_once(setup, batch, args.steps, 0)
    print(f"device={args.device} model={args.size}² ch={args.channels} mult={args.channel_mult} "
          f"threads={torch.get_num_threads()} jobs={args.sources}×{len(setup[-1])}={n_jobs} DDIM-{args.steps}")
    print(f"{'variant':<14}{'batch':>6}{'seconds':>10}{'images/s':>10}")
    print(f"{'batched':<14}{batch:>6}{t_b:>10.2f}{n_jobs / t_b:>10.2f}")
    if not args.skip_single:
        single, t_s = run_once(setup, 1, args.steps, 0)
        print(f"{'one-by-one':<14}{1:>6}{t_s:>10.2f}{n_jobs / t_s:>10.2f}")
        diff = (batched - single).abs().max().item()
        print(f"speed-up batched / one-by-one: {t_s / t_b:.2f}×   (max |Δ| between the pictures: {diff:.2e})")


if __name__ == "__main__":
    main()
