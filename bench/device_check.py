"""One call, one table: is this GPU fast and correct enough for DiffusionRig-Emo?

    PYTHONPATH=. python bench/device_check.py               # one H100/H200: < 8 minutes
    PYTHONPATH=. python bench/device_check.py --tiny        # CPU, tiny sizes: the same code paths in < 60 s

Rows (each measured in this one process, synthetic assets and random weights: speed and agreement, not
quality; a row that fails prints ERROR and the exit status is 1):

- stage-1 training images/s at 256², global batch 32: the original recipe (fp16 autocast + GradScaler,
  einsum attention, per-parameter Adam) vs ours (bf16; eager NCHW, channels-last, ``torch.compile`` +
  channels-last), with model FLOPs utilisation against the chip's dense bf16 peak (``--peak-tflops``, else
  looked up from the device name);
- DDIM-20 edit of 20 sources × 3 modes (seconds, batched as ``dre edit``);
- extraction + buffer rendering images/s at FLAME size (5023 vertices, 9976 faces) through PyTorch3D's
  rasteriser (its CUDA kernel on a GPU);
- ``dre pack`` images/s (render + encode + write an LMDB);
- stage 2 (5k steps, batch 4): the time extrapolated from the measured step rate;
- correctness: bf16 ε vs fp32 ε on the same weights; GPU buffers vs the CPU tiled renderer; a one-rank
  process group (NCCL on CUDA, gloo on CPU) that all-reduces.

Why one process and one table: a lent GPU's time is short; the table goes into docs/performance.md with the
date and chip as it is printed.
"""

from __future__ import annotations

import argparse
import datetime
import math
import socket
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Dense bf16 peak TFLOP/s (no sparsity) by a substring of torch.cuda.get_device_name().
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0}


@dataclass
class Row:
    check: str
    value: str
    target: str = ""
    verdict: str = ""  # ok | LOW | ERROR | - (no target)
    note: str = ""


@dataclass
class Sizes:
    """Problem sizes: the published ones on a GPU, tiny ones for --tiny (same code paths)."""

    image: int
    channels: int
    channel_mult: tuple[int, ...]
    res_blocks: int
    batch: int
    stage2_batch: int
    sources: int
    modes: str
    ddim: int
    extract_images: int
    extract_mesh: str
    pack_images: int
    train_steps: int
    rounds: int
    warmup: int
    compile: bool

    @classmethod
    def for_run(cls, tiny: bool) -> Sizes:
        if tiny:
            return cls(image=32, channels=16, channel_mult=(1, 2), res_blocks=1, batch=2, stage2_batch=2, sources=2,
                       modes="exp,pose,light", ddim=2, extract_images=2, extract_mesh="synth", pack_images=4,
                       train_steps=1, rounds=1, warmup=1, compile=False)
        return cls(image=256, channels=128, channel_mult=(), res_blocks=2, batch=32, stage2_batch=4, sources=20,
                   modes="exp,pose,light", ddim=20, extract_images=256, extract_mesh="flame", pack_images=256,
                   train_steps=10, rounds=3, warmup=3, compile=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_tflops(device: torch.device, override: float) -> float:
    if override:
        return override
    if device.type != "cuda":
        return 0.0
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), 0.0)


# ---------------------------------------------------------------------------------------------- training
def train_setup(sz: Sizes, device: torch.device, recipe: str, stage: int = 1):
    """(run one step, FLOPs counter) for a recipe: original | eager | channels_last | compile."""
    from dre.model import ModelConfig, maybe_compile, to_channels_last
    from dre.model.precision import Precision
    from dre.train.config import TrainConfig
    from dre.train.loop import _step
    from dre.train.stage_model import build_model, trainable_params
    from tests.original_recipe import use_original_recipe

    cuda = device.type == "cuda"
    model_cfg = ModelConfig(image_size=sz.image, model_channels=sz.channels, channel_mult=sz.channel_mult,
                            num_res_blocks=sz.res_blocks)
    batch = sz.batch if stage == 1 else sz.stage2_batch
    cfg = TrainConfig(stage=stage, lmdb=["<random>"], run_dir="-", out="-", model=model_cfg, batch_size=batch,
                      max_steps=1, device=str(device), init="-" if stage == 2 else None).resolved()
    torch.manual_seed(0)
    model, diffusion = build_model(cfg)
    model.to(device).train()
    if recipe == "original":
        use_original_recipe(model)
        prec = Precision("fp16" if cuda else "fp32", device.type)
    else:
        prec = Precision("bf16", device.type)  # on CPU too: the same code path, not a CPU speed claim
        if recipe in ("channels_last", "compile"):
            to_channels_last(model)
        if recipe == "compile":
            maybe_compile(model, True)
    params = trainable_params(cfg, model)
    opt = torch.optim.Adam(params, lr=1e-4, fused=recipe != "original" and cuda,
                           foreach=False if recipe == "original" else None)
    scaler = prec.make_scaler()
    g = torch.Generator().manual_seed(0)
    s = sz.image
    x0 = (torch.rand(batch, 3, s, s, generator=g) * 2 - 1).to(device)
    cond = torch.rand(batch, 9, s, s, generator=g).to(device)
    t = torch.randint(0, cfg.diffusion.steps, (batch,), generator=g).to(device)
    noise = torch.randn(batch, 3, s, s, generator=g).to(device)
    if recipe in ("channels_last", "compile"):
        x0, cond = x0.contiguous(memory_format=torch.channels_last), cond.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        _step(cfg, model, model, diffusion, opt, scaler, prec, params, x0, cond, t, noise)

    return step, batch


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, steps: int, n_rounds: int) -> float:
    """Median seconds per step over ``n_rounds`` rounds of ``steps`` after ``warmup`` steps."""
    for _ in range(warmup):
        step()
    sync(device)
    rounds = []
    for _ in range(n_rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        rounds.append((time.perf_counter() - t0) / steps)
    return statistics.median(rounds)


def step_flops(step: Callable[[], None], device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        step()
    sync(device)
    return float(fc.get_total_flops())


def check_stage1(sz: Sizes, device: torch.device, peak: float, rows: list[Row]) -> None:
    recipes = ["original", "eager", "channels_last"] + (["compile"] if sz.compile else [])
    rates: dict[str, float] = {}
    flops = 0.0
    for recipe in recipes:
        try:
            step, batch = train_setup(sz, device, recipe)
            if recipe == "eager" and device.type == "cuda":
                flops = step_flops(step, device)  # same model FLOPs for every recipe
            sec = time_steps(step, device, sz.warmup + (2 if recipe == "compile" else 0), sz.train_steps, sz.rounds)
            rates[recipe] = batch / sec
            tf = flops / sec / 1e12 if flops else 0.0
            mfu = f"MFU {tf / peak:.0%} ({tf:.0f} TFLOP/s)" if flops and peak else ""
            target = ""
            mark = "-"
            if recipe != "original" and "original" in rates:
                ratio = rates[recipe] / rates["original"]
                target = "≥ 2× original, ≥ 40% MFU"
                good = ratio >= 2 and (not peak or not flops or tf / peak >= 0.4)
                mark = verdict(good, device)
                mfu = f"{ratio:.2f}× original; {mfu}".rstrip("; ")
            rows.append(Row(f"stage 1 {recipe} ({'fp16+scaler' if recipe == 'original' else 'bf16'})",
                            f"{rates[recipe]:.1f} img/s", target, mark, mfu))
            del step
        except Exception as exc:  # noqa: BLE001  (one failed row must not hide the others)
            rows.append(error_row(f"stage 1 {recipe}", exc))
        if device.type == "cuda":
            torch.cuda.empty_cache()


def check_stage2(sz: Sizes, device: torch.device, rows: list[Row]) -> None:
    try:
        step, batch = train_setup(sz, device, "channels_last" if device.type == "cuda" else "eager", stage=2)
        sec = time_steps(step, device, sz.warmup, sz.train_steps, sz.rounds)
        total = sec * 5000
        rows.append(Row("stage 2, 5k steps × batch 4 (extrapolated)", f"{total / 60:.1f} min", "< 10 min",
                        verdict(total < 600, device), f"{sec * 1e3:.1f} ms/step at batch {batch}"))
    except Exception as exc:  # noqa: BLE001
        rows.append(error_row("stage 2", exc))


# ---------------------------------------------------------------------------------------------- editing
def check_edit(sz: Sizes, device: torch.device, rows: list[Row]) -> None:
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        import bench_edit  # the edit engine set-up (synthetic assets, random model)

        args = argparse.Namespace(device=str(device), sources=sz.sources, modes=sz.modes, steps=sz.ddim,
                                  size=sz.image, channels=sz.channels, channel_mult=list(sz.channel_mult),
                                  res_blocks=sz.res_blocks, attention=[16], batch_size=16)
        setup = bench_edit.build(args)
        n_jobs = sz.sources * len(setup[-1])
        bench_edit.run_once(setup, 16, 2, 0)  # warm-up
        _, sec = bench_edit.run_once(setup, 16, sz.ddim, 0)
        rows.append(Row(f"edit DDIM-{sz.ddim}, {sz.sources} sources × {len(setup[-1])} modes", f"{sec:.2f} s",
                        "< 10 s", verdict(sec < 10, device), f"{n_jobs / sec:.1f} pictures/s"))
    except Exception as exc:  # noqa: BLE001
        rows.append(error_row("edit", exc))


# ---------------------------------------------------------------------------------------------- 3D
def check_extract(sz: Sizes, device: torch.device, tmp: Path, rows: list[Row]) -> None:
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        import bench_extract

        from dre.face3d.extractor import Extractor
        from dre.face3d.face_model import FaceModel

        assets = bench_extract.write_assets(tmp / "extract", sz.extract_mesh)
        fm = FaceModel.from_assets(assets, device)
        ext = Extractor.from_assets(assets, "deca", device)
        imgs, lms = bench_extract.make_photos(fm, sz.extract_images)
        bench_extract.run_ours(ext, fm, imgs[:2], lms[:2], 2, device)  # warm-up
        times, _ = bench_extract.run_ours(ext, fm, imgs, lms, 32, device)
        rate = len(imgs) / sum(times.values())
        mesh = f"{fm.flame.v_template.shape[0]} vertices / {fm.renderer.faces.shape[0]} faces"
        rows.append(Row("extraction + rendering (batch 32)", f"{rate:.0f} img/s", "≥ 1000 img/s",
                        verdict(rate >= 1000, device),
                        f"{mesh}; crop {len(imgs) / times['crop']:.0f}, encode {len(imgs) / times['encode']:.0f}, "
                        f"render {len(imgs) / times['render']:.0f} img/s"))
    except Exception as exc:  # noqa: BLE001
        rows.append(error_row("extraction + rendering", exc))


def check_pack(sz: Sizes, device: torch.device, tmp: Path, rows: list[Row]) -> None:
    try:
        sys.path.insert(0, str(ROOT / "tests"))
        from _data_helpers import renderable_codes, write_codes_table

        from dre import pack
        from dre.face3d.face_model import FaceModel
        from dre.face3d.synth import write_synthetic_assets

        root = tmp / "pack"
        assets = write_synthetic_assets(root / "assets", seed=0)
        size = sz.image
        flat, tform = renderable_codes(sz.pack_images, size)
        model = FaceModel.from_assets(assets, device)
        write_codes_table(root / "codes.parquet", root / "aligned", sz.pack_images, size, flat=flat, tform=tform,
                          assets=model.checksums)
        cfg = pack.Config(out=root / "album.lmdb", images=root / "aligned", codes=root / "codes.parquet", size=size,
                          batch_size=32, device=str(device))
        res = pack.run(cfg, face_model=model)
        rows.append(Row(f"pack ({size}², batch 32)", f"{res.count / res.seconds:.0f} img/s", "", "-",
                        f"{res.count} images in {res.seconds:.1f} s (PNG encode + render + LMDB write)"))
    except Exception as exc:  # noqa: BLE001
        rows.append(error_row("pack", exc))


# ---------------------------------------------------------------------------------------------- correctness
def check_bf16_eps(sz: Sizes, device: torch.device, rows: list[Row]) -> None:
    """ε of one model on one batch, fp32 vs bf16 autocast: relative L2 error (bf16 has an 8-bit mantissa)."""
    try:
        from dre.model import DiffusionRig, ModelConfig
        from dre.model.precision import Precision

        torch.manual_seed(0)
        mcfg = ModelConfig(image_size=sz.image, model_channels=sz.channels, channel_mult=sz.channel_mult,
                           num_res_blocks=sz.res_blocks, dropout=0.0)
        model = DiffusionRig(mcfg).eval()
        with torch.no_grad():  # the published init zeroes the output layers (ε ≡ 0): give them weights
            for param in model.parameters():
                if not param.any():
                    param.normal_(0.0, 0.05)
        model.to(device)
        g = torch.Generator().manual_seed(1)
        b, s = 4, sz.image
        x = torch.randn(b, 3, s, s, generator=g).to(device)
        cond = torch.rand(b, 9, s, s, generator=g).to(device)
        x0 = (torch.rand(b, 3, s, s, generator=g) * 2 - 1).to(device)
        t = torch.tensor([10, 250, 500, 900])[:b].to(device)
        with torch.no_grad():
            ref = model(x, t, cond, x_start=x0)
            with Precision("bf16", device.type).autocast():
                low = model(x, t, cond, x_start=x0)
        rel = float((low - ref).norm() / ref.norm())
        rows.append(Row("bf16 ε vs fp32 ε (same weights)", f"{rel:.2e} rel. L2", "< 5e-2", verdict(rel < 5e-2, device, True),
                        f"max |Δ| {float((low - ref).abs().max()):.2e}"))
    except Exception as exc:  # noqa: BLE001
        rows.append(error_row("bf16 ε vs fp32 ε", exc))


def check_renderer(sz: Sizes, device: torch.device, tmp: Path, rows: list[Row]) -> None:
    """The same codes rendered on ``device`` (direct rasteriser on CUDA) and by the CPU tiled rasteriser."""
    try:
        import numpy as np

        sys.path.insert(0, str(ROOT / "tests"))
        from _data_helpers import renderable_codes

        from dre.face3d.codes import FlameCodes
        from dre.face3d.face_model import FaceModel
        from dre.face3d.synth import write_synthetic_assets

        assets = write_synthetic_assets(tmp / "render_assets", seed=0)
        size = sz.image
        flat, tform = renderable_codes(4, size)
        codes = FlameCodes.from_flat(torch.from_numpy(np.asarray(flat, np.float32)))
        tf = torch.from_numpy(np.asarray(tform, np.float32))
        cpu = FaceModel.from_assets(assets, torch.device("cpu"))
        with torch.no_grad():
            a = cpu.render(codes, tf, size).condition()
            if device.type == "cuda":
                other = FaceModel.from_assets(assets, device)
                b = other.render(codes.to(device), tf.to(device), size).condition().cpu()
                what = "CUDA buffers vs CPU tiled renderer"
            else:  # the same comparison on CPU: the direct rasteriser vs the tiled one
                cpu.renderer.tile = 0
                b = cpu.render(codes, tf, size).condition()
                what = "direct vs tiled rasteriser (CPU)"
        diff = (a - b).abs()
        frac = float((diff.amax(dim=1) > 1e-3).float().mean())
        rows.append(Row(what, f"{frac:.3%} pixels differ", "< 0.5% (silhouette edges)",
                        verdict(frac < 5e-3, device, True), f"max |Δ| {float(diff.max()):.2e}"))
    except Exception as exc:  # noqa: BLE001
        rows.append(error_row("renderer agreement", exc))


def check_process_group(device: torch.device, rows: list[Row]) -> None:
    """One rank joins a group (NCCL on CUDA, gloo on CPU) and all-reduces: the multi-GPU start-up path."""
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        t0 = time.perf_counter()
        kw = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                                timeout=datetime.timedelta(seconds=60), **kw)
        x = torch.ones(4, device=device)
        dist.all_reduce(x)
        sync(device)
        ok = bool((x == 1).all())
        sec = time.perf_counter() - t0
        dist.destroy_process_group()
        rows.append(Row(f"one-rank {backend} init + all-reduce", f"{sec:.2f} s", "works",
                        "ok" if ok else "ERROR", ""))
    except Exception as exc:  # noqa: BLE001
        if dist.is_initialized():
            dist.destroy_process_group()
        rows.append(error_row(f"one-rank {backend}", exc))


# ---------------------------------------------------------------------------------------------- table
def verdict(good: bool, device: torch.device, correctness: bool = False) -> str:
    """Speed targets are for one H100/H200: on CPU they do not apply (``-``); correctness ones always do."""
    if not correctness and device.type != "cuda":
        return "-"
    return "ok" if good else "LOW" if not correctness else "FAIL"


def error_row(check: str, exc: BaseException) -> Row:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return Row(check, "ERROR", "", "ERROR", f"{type(exc).__name__}: {exc} ({where})"[:300])


def table(rows: list[Row]) -> str:
    head = ("check", "value", "target", "", "note")
    cells = [head] + [(r.check, r.value, r.target, r.verdict, r.note) for r in rows]
    width = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for i, c in enumerate(cells):
        lines.append("| " + " | ".join(c[k].ljust(width[k]) if k < 4 else c[k] for k in range(5)) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in width) + "|---|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="CPU, tiny sizes: check the script itself (< 60 s)")
    p.add_argument("--device", default=None, help="default: cuda when available (cpu with --tiny)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak of the chip (default: by name)")
    p.add_argument("--only", nargs="*", default=None,
                   help="subset: stage1 stage2 edit extract pack bf16 render nccl")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.tiny or not torch.cuda.is_available() else "cuda"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)) if args.tiny else torch.get_num_threads())
    sz = Sizes.for_run(args.tiny)
    peak = peak_tflops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"device check {stamp}: {name}; torch {torch.__version__}; bf16 peak {peak or '?'} TFLOP/s; "
          f"{'--tiny' if args.tiny else f'{sz.image}², batch {sz.batch}'}", flush=True)
    rows: list[Row] = []
    t0 = time.perf_counter()
    wanted = set(args.only) if args.only else None
    with tempfile.TemporaryDirectory(prefix="device_check_") as tmp_name:
        tmp = Path(tmp_name)
        checks: list[tuple[str, Callable[[], None]]] = [
            ("nccl", lambda: check_process_group(device, rows)),
            ("bf16", lambda: check_bf16_eps(sz, device, rows)),
            ("render", lambda: check_renderer(sz, device, tmp, rows)),
            ("stage1", lambda: check_stage1(sz, device, peak, rows)),
            ("stage2", lambda: check_stage2(sz, device, rows)),
            ("edit", lambda: check_edit(sz, device, rows)),
            ("extract", lambda: check_extract(sz, device, tmp, rows)),
            ("pack", lambda: check_pack(sz, device, tmp, rows)),
        ]
        for key, run in checks:
            if wanted is None or key in wanted:
                n = len(rows)
                run()
                for r in rows[n:]:
                    print(f"  {r.check}: {r.value} {r.verdict} {r.note}", flush=True)
    print()
    print(table(rows))
    print(f"\n{len(rows)} rows in {time.perf_counter() - t0:.0f} s")
    return 1 if any(r.verdict in ("ERROR", "FAIL") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
