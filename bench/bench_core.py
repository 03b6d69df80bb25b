"""Benchmark of the diffusion core: our fast path vs the original recipe, side by side in one run.

Measures
  1. training step (forward + backward + Adam) images/s of the DiffusionRig model:
     * ``original``: the published arithmetic (einsum QKV attention with fp32 softmax, fp32-cast
       GroupNorm, two separate FiLM passes), NCHW, eager; fp16 autocast + GradScaler on CUDA (as the
       original trains), fp32 on CPU (CPUs have no fast fp16);
     * ``ours-fp32``: fast recipe (SDPA, folded FiLM+GN affine), channels-last on CUDA, fp32;
     * ``ours-bf16``: the same under bf16 autocast (the training default on GPUs);
     * ``ours-bf16-compile`` (``--compile``): plus ``torch.compile`` of the UNet;
  2. DDIM-20 sampling images/s: the original-style loop (per-step host-built timestep tensors and
     coefficient tables copied from numpy, original recipe model) vs ours (no host syncs, fast model),
     plus the loop overhead alone with a trivial model.
Ratios are against ``original`` measured in the same process. On a GPU it also prints the model
FLOPs per image (``torch.utils.flop_counter``) and the fraction of the bf16 peak reached.

Usage: ``python bench/bench_core.py [--preset small|full] [--batch N] [--steps N] [--compile]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dre.diffusion import DiffusionConfig, GaussianDiffusion, ddim_sample  # noqa: E402
from dre.model import DiffusionRig, ModelConfig, maybe_compile, to_channels_last  # noqa: E402
from tests.original_recipe import use_original_recipe  # noqa: E402  (the published arithmetic: test oracle)

PRESETS = {
    "tiny": dict(image_size=32, model_channels=32, channel_mult=(1, 2), attention_resolutions=(16,)),
    "small": dict(image_size=64, model_channels=64),
    "full": dict(image_size=256),
}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_best(fns: dict[str, Callable[[], None]], device: torch.device, iters: int, rounds: int) -> dict[str, float]:
    """Seconds per call for each function, timed in alternation (round-robin) and keeping each one's
    best round, so load from other processes hits every variant alike."""
    for fn in fns.values():
        fn()
    sync(device)
    best = {k: math.inf for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            sync(device)
            best[k] = min(best[k], (time.perf_counter() - t0) / iters)
    return best


def make_batch(cfg: ModelConfig, batch: int, device: torch.device):
    g = torch.Generator(device="cpu").manual_seed(0)
    s = cfg.image_size
    x0 = (torch.rand(batch, 3, s, s, generator=g) * 2 - 1).to(device)
    cond = torch.randn(batch, 9, s, s, generator=g).to(device)
    return x0, cond


def build(cfg: ModelConfig, device: torch.device, recipe: str, channels_last: bool, compile_: bool) -> DiffusionRig:
    torch.manual_seed(0)
    model = DiffusionRig(cfg).to(device)
    with torch.no_grad():  # non-zero residual branches so every path does real work
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.02)
    if recipe == "original":
        use_original_recipe(model)
    if channels_last:
        to_channels_last(model)
    return maybe_compile(model, compile_)


def train_step_fn(model, diffusion, x0, cond, precision: str, device: torch.device) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    gen = torch.Generator(device=device).manual_seed(0)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],), device=device, generator=gen)
        noise = torch.randn(x0.shape, device=device, generator=gen)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            losses = diffusion.training_losses(lambda xt, tt: model(xt, tt, cond, x_start=x0), x0, t, noise)
            loss = losses["loss"].mean()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    return step


def original_style_ddim(diffusion: GaussianDiffusion, model_fn, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """The original loop's host work per step: timestep tensor built from a Python list, every
    coefficient looked up by copying its whole float64 numpy table to the device (``_extract``)."""
    sched = diffusion.spaced(f"ddim{steps}")
    ac = sched.alphas_cumprod.numpy()
    ac_prev = sched.alphas_cumprod_prev.numpy()
    recip = np.sqrt(1.0 / ac)
    recipm1 = np.sqrt(1.0 / ac - 1)
    tmap = sched.timesteps.numpy()
    device = noise.device
    x = noise
    b = x.shape[0]

    def extract(arr: np.ndarray, t: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(arr).to(device=device)[t].float()[:, None, None, None]

    for i in reversed(range(sched.num_steps)):
        t = torch.tensor([i] * b, device=device)
        eps = model_fn(x, torch.from_numpy(tmap).to(device)[t])
        x0 = (extract(recip, t) * x - extract(recipm1, t) * eps).clamp(-1, 1)
        eps = (extract(recip, t) * x - x0) / extract(recipm1, t)
        a_prev = extract(ac_prev, t)
        x = x0 * a_prev.sqrt() + (1 - a_prev).sqrt() * eps
    return x


def flops_per_image(model, diffusion, x0, cond, device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    t = torch.zeros(x0.shape[0], dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as fc:
        out = model(x0, t, cond, x_start=x0)
        out.float().square().mean().backward()
    return fc.get_total_flops() / x0.shape[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None, help="default: small on CPU, full on CUDA")
    ap.add_argument("--batch", type=int, default=None, help="default 2 on CPU, 32 on CUDA")
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to warm up on CPU)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = leave)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-sampling", action="store_true")
    ap.add_argument("--cpu-bf16", action="store_true", help="also time bf16 autocast on a CPU")
    args = ap.parse_args(argv)

    device = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available()) else
                          ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = device.type == "cuda"
    preset = args.preset or ("full" if gpu else "small")
    batch = args.batch or (32 if gpu else 2)
    iters = args.iters or (10 if gpu else 2)
    cfg = ModelConfig(**PRESETS[preset])
    if gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    diffusion = GaussianDiffusion(DiffusionConfig())
    x0, cond = make_batch(cfg, batch, device)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; preset {preset} "
          f"(image {cfg.image_size}, model_channels {cfg.model_channels}, channel_mult {cfg.resolved_channel_mult()}); "
          f"batch {batch}")

    orig_prec = "fp16" if gpu else "fp32"
    # channels-last helps cuDNN tensor-core convs; on CPUs (mkldnn, few channels) it is slower, so off there
    cl = gpu
    variants = [("original", "original", False, orig_prec, False), ("ours-fp32", "fast", cl, "fp32", False)]
    if gpu or args.cpu_bf16:  # CPUs without bf16 units emulate it: slow and meaningless there
        variants.append(("ours-bf16", "fast", cl, "bf16", False))
    if args.compile:
        variants.append(("ours-bf16-compile" if gpu else "ours-fp32-compile", "fast", cl, "bf16" if gpu else "fp32", True))

    print("\n== training step (forward + backward + Adam), images/s ==")
    steps, models = {}, {}
    for label, recipe, cl_, prec, comp in variants:
        models[label] = build(cfg, device, recipe, cl_, comp)
        steps[label] = train_step_fn(models[label], diffusion, x0, cond, prec, device)
    secs = interleaved_best(steps, device, iters, args.rounds)
    print(f"{'variant':<20}{'precision':<11}{'s/step':>10}{'img/s':>10}{'ratio':>8}")
    base = secs["original"]
    for label, _, _, prec, _ in variants:
        sec = secs[label]
        print(f"{label:<20}{prec:<11}{sec:>10.4f}{batch / sec:>10.2f}{base / sec:>7.2f}x")
    if gpu and "ours-bf16" in models:
        flops = flops_per_image(models["ours-bf16"], diffusion, x0, cond, device)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        for label in [v[0] for v in variants if v[0].startswith("ours-bf16")]:
            tflops = flops * batch / secs[label] / 1e12
            frac = f"{tflops / peak:.1%} of {peak:.0f} TFLOP/s bf16 peak" if peak else "peak unknown"
            print(f"{label}: model {flops / 1e12:.3f} TFLOP/img fwd+bwd -> {tflops:.1f} TFLOP/s ({frac})")
    del steps, models
    if gpu:
        torch.cuda.empty_cache()

    if not args.skip_sampling:
        print(f"\n== DDIM-{args.steps} sampling (inference, batch {batch}), images/s ==")
        print(f"{'variant':<34}{'s/batch':>10}{'img/s':>10}{'ratio':>8}")
        noise = torch.randn(x0.shape, device=device, generator=torch.Generator(device=device).manual_seed(1))
        orig = build(cfg, device, "original", False, False).eval()
        fast = build(cfg, device, "fast", gpu, False).eval()
        latent = fast.encode(x0).detach()

        def fn_for(model, prec):
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)

            def fn(x, t):
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    return model(x, t, cond, latent=latent).float()
            return fn

        sample_iters = 1 if not gpu else 3
        steps_s = f"ddim{args.steps}"
        fns = {
            "original loop + original model": lambda: original_style_ddim(diffusion, fn_for(orig, orig_prec), noise, args.steps),
            "our loop + original model": lambda: ddim_sample(diffusion, fn_for(orig, orig_prec), noise, steps_s),
            "our loop + fast model fp32": lambda: ddim_sample(diffusion, fn_for(fast, "fp32"), noise, steps_s),
        }
        if gpu or args.cpu_bf16:
            fns["our loop + fast model bf16"] = lambda: ddim_sample(diffusion, fn_for(fast, "bf16"), noise, steps_s)
        with torch.inference_mode():
            rows = list(interleaved_best(fns, device, sample_iters, args.rounds).items())
            zero = lambda x, t: x * 0.5  # noqa: E731  (loop overhead only)
            small = noise[:, :, :8, :8].contiguous()
            loops = interleaved_best({"orig": lambda: original_style_ddim(diffusion, zero, small, args.steps),
                                      "ours": lambda: ddim_sample(diffusion, zero, small, steps_s)}, device, 20, args.rounds)
            t_orig_loop, t_our_loop = loops["orig"], loops["ours"]
        base = rows[0][1]
        for label, sec in rows:
            print(f"{label:<34}{sec:>10.4f}{batch / sec:>10.2f}{base / sec:>7.2f}x")
        print(f"loop overhead alone (trivial model, {args.steps} steps): original-style {t_orig_loop * 1e3:.2f} ms, "
              f"ours {t_our_loop * 1e3:.2f} ms ({t_orig_loop / t_our_loop:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
