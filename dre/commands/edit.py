"""``dre edit``: transfer expression, head pose, lighting or latent from a target onto album photos."""

from __future__ import annotations

import argparse
from pathlib import Path

from dre.commands.score import add_settings_flags, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edit",
        help="edit source photos with a target's expression/pose/light/latent (DDIM)",
        description=(
            "Swap FLAME codes between the source photos and a target face (modes exp, pose, light, latent and "
            "combinations such as exp+pose), re-render the physical buffers, and sample with DDIM from seeded "
            "noise or from the DDIM inversion of the source. Writes <out>/<source_stem>_<mode>.png, grid.png, "
            "the edited buffers and edit.parquet."
        ),
    )
    p.add_argument("--model", required=True, help="stage-2 model file (results/models/stage2/.../model.pt)")
    p.add_argument("--assets", required=True, help="assets folder")
    p.add_argument("--source", required=True, help="aligned source image or folder (an album's aligned folder)")
    p.add_argument("--source-codes", help="codes.parquet of the sources (else extracted here)")
    p.add_argument("--target", required=True, help="aligned target folder (with align.parquet) or aligned image")
    p.add_argument("--modes", default="exp", help="comma list of modes: exp, pose, light, latent, or a+b combos")
    p.add_argument("--source-extractor", choices=("deca", "emoca"), default="deca")
    p.add_argument("--target-extractor", choices=("deca", "emoca"), default="deca")
    p.add_argument("--emoca-model", default="EMOCA_v2_lr_mse_20")
    p.add_argument("--mean-shape", help="mean_shape.npy of the album (written by `dre pack --mean-shape`)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (ddimN respacing)")
    p.add_argument("--eta", type=float, default=0.0)
    p.add_argument("--init", choices=("noise", "inversion"), default="noise")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--save-buffers",
        action="store_true",
        help="also show the rendered buffers in grid.png (the buffers are always saved as npz)",
    )
    p.add_argument("--no-score", action="store_true",
                   help="do not score the pictures (no landmark detection or re-extraction; no flags in the grid)")
    add_settings_flags(p)
    p.add_argument("--retry-failed", type=int, default=0, metavar="N",
                   help="re-draw pictures flagged as failed (no face, residual noise) from new recorded seeds, at "
                   "most N times each, keeping the best-scoring draw (docs/edits.md)")
    p.add_argument("--out", required=True, help="output folder (results/edits/<edit>)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="UNet arithmetic: auto = bf16 on a GPU, fp32 on the CPU (byte-identical reruns)",
    )
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> "EditConfig":  # noqa: F821
    """Flags → :class:`dre.edit.EditConfig` (mode strings are parsed and checked here)."""
    from dre.edit import EditConfig, parse_modes

    opt = lambda v: Path(v) if v else None  # noqa: E731
    cfg = EditConfig(
        model=Path(args.model),
        assets=Path(args.assets),
        source=Path(args.source),
        target=Path(args.target),
        out=Path(args.out),
        modes=parse_modes(args.modes),
        source_codes=opt(args.source_codes),
        source_extractor=args.source_extractor,
        target_extractor=args.target_extractor,
        emoca_model=args.emoca_model,
        mean_shape=opt(args.mean_shape),
        steps=args.steps,
        eta=args.eta,
        init=args.init,
        seed=args.seed,
        batch_size=args.batch_size,
        save_buffers=args.save_buffers,
        device=args.device,
        precision=args.precision,
        score=not args.no_score,
        score_settings=settings_from_args(args),
        retry_failed=args.retry_failed,
    )
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> int:
    from dre.edit import run_edit

    out = run_edit(config_from_args(args))
    print(out)
    return 0
