"""Training throughput: our recipe vs the original DiffusionRig recipe, side by side in one run.

- ours: our UNet arithmetic (SDPA attention, folded FiLM/GroupNorm), fused Adam, bf16 autocast and
  channels-last on CUDA (fp32 on CPU, where autocast to bf16 is not a speed-up on most CPUs), optional
  ``torch.compile`` of the UNet.
- original: the published arithmetic (``tests/original_recipe.py``: einsum attention, fp32-copy GroupNorm), eager,
  per-parameter Adam, fp16 autocast + GradScaler on CUDA (fp32 on CPU: fp16 autocast on CPU is an
  emulation, not the original's GPU path).

Both run the very same training step of ``dre.train.loop`` (stage 1: UNet + encoder, P2 loss, grad clip
1.0) on random data; steps alternate between the recipes in rounds so machine load affects both alike.
On CUDA the model FLOPs per step are counted once (``FlopCounterMode``) and reported as TFLOP/s and,
with ``--peak-tflops``, as a fraction of the GPU's dense bf16 peak.

    PYTHONPATH=. python bench/bench_train.py          # CPU, the demo's model (config/demo/config.yaml)
    PYTHONPATH=. python bench/bench_train.py --device cuda --size 256 --channel-mult "" --res-blocks 2 \
        --channels 128 --batch 32 --peak-tflops 989
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from dre.model import ModelConfig, maybe_compile, to_channels_last
from dre.model.precision import Precision
from dre.train.config import TrainConfig
from dre.train.loop import _step
from dre.train.stage_model import build_model, trainable_params
from tests.original_recipe import use_original_recipe  # the published arithmetic (the tests' oracle)


def _cfg(args: argparse.Namespace):
    model = ModelConfig(
        image_size=args.size, model_channels=args.channels,
        channel_mult=tuple(int(x) for x in args.channel_mult.split(",")) if args.channel_mult else (),
        num_res_blocks=args.res_blocks, attention_resolutions=(args.attention,),
    )
    return TrainConfig(stage=1, lmdb=["<random>"], run_dir="-", out="-", model=model, batch_size=args.batch,
                       max_steps=1, device=args.device).resolved()


def _setup(args: argparse.Namespace, recipe: str, device: torch.device):
    cfg = _cfg(args)
    model, diffusion = build_model(cfg)
    model.to(device)
    if recipe != "ours":
        use_original_recipe(model)
    if recipe == "ours":
        if device.type == "cuda":
            to_channels_last(model)
        maybe_compile(model, args.compile)
        prec = Precision("bf16" if device.type == "cuda" else "fp32", device.type)
    else:
        prec = Precision("fp16" if device.type == "cuda" else "fp32", device.type)
    model.train()
    params = trainable_params(cfg, model)
    opt = torch.optim.Adam(params, lr=1e-4, fused=recipe == "ours", foreach=False if recipe != "ours" else None)
    return cfg, model, diffusion, opt, prec.make_scaler(), prec, params


def _batch(cfg, device: torch.device, seed: int, channels_last: bool):
    g = torch.Generator().manual_seed(seed)
    b, s = cfg.batch_size, cfg.model.image_size
    x0 = (torch.rand(b, 3, s, s, generator=g) * 2 - 1).to(device)
    cond = torch.rand(b, 9, s, s, generator=g).to(device)
    t = torch.randint(0, cfg.diffusion.steps, (b,), generator=g).to(device)
    noise = torch.randn(b, 3, s, s, generator=g).to(device)
    if channels_last:
        x0, cond = x0.contiguous(memory_format=torch.channels_last), cond.contiguous(memory_format=torch.channels_last)
    return x0, cond, t, noise


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _flops(run, device: torch.device) -> float:
    with FlopCounterMode(display=False) as fc:
        run()
    _sync(device)
    return float(fc.get_total_flops())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--channel-mult", default="1,2,2", help="empty = by image size (the published 256² model)")
    p.add_argument("--res-blocks", type=int, default=1)
    p.add_argument("--attention", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps per recipe per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet in our recipe")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="GPU dense bf16 peak, for the MFU column")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    setups = {r: _setup(args, r, device) for r in ("ours", "original")}
    batches = {r: _batch(setups[r][0], device, 0, r == "ours" and device.type == "cuda") for r in setups}

    def run(r: str) -> None:
        cfg, model, diffusion, opt, scaler, prec, params = setups[r]
        x0, cond, t, noise = batches[r]
        _step(cfg, model, model, diffusion, opt, scaler, prec, params, x0, cond, t, noise)

    for r in setups:
        for _ in range(args.warmup):
            run(r)
    _sync(device)
    times: dict[str, list[float]] = {r: [] for r in setups}
    for _ in range(args.rounds):
        for r in setups:
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                run(r)
            _sync(device)
            times[r].append((time.perf_counter() - t0) / args.steps)
    flops = {r: _flops(lambda r=r: run(r), device) for r in setups} if device.type == "cuda" else {}

    cfg = setups["ours"][0]
    n_params = sum(p.numel() for p in setups["ours"][1].parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; model {cfg.model.image_size}², {n_params / 1e6:.1f} M params, batch {cfg.batch_size}, "
          f"compile={args.compile}")
    print(f"{'recipe':<10}{'s/step':>10}{'steps/s':>10}{'images/s':>10}{'TFLOP/s':>10}{'MFU':>8}")
    rate = {}
    for r in setups:
        sec = statistics.median(times[r])
        rate[r] = 1.0 / sec
        tf = flops.get(r, 0.0) / sec / 1e12 if flops else 0.0
        mfu = f"{tf / args.peak_tflops:.0%}" if flops and args.peak_tflops else "-"
        print(f"{r:<10}{sec:>10.4f}{rate[r]:>10.2f}{rate[r] * cfg.batch_size:>10.1f}"
              f"{(f'{tf:.1f}' if flops else '-'):>10}{mfu:>8}")
    print(f"ratio ours/original: {rate['ours'] / rate['original']:.2f}x")


if __name__ == "__main__":
    main()
