"""``dre extract``: DECA or EMOCA FLAME codes for every aligned image (the workflow's extract rule)."""

from __future__ import annotations

import argparse



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="DECA/EMOCA FLAME codes (shape, tex, exp, pose, cam, light, crop transform) per image",
        description=(
            "Crop each aligned image as DECA does (68-landmark box x1.1, x1.25, similarity warp to 224), run "
            "the DECA coarse encoder (and EMOCA's expression encoder for --extractor emoca) and write one "
            "Parquet row per image: status, message, every code, the crop transform, the extractor and the "
            "asset checksums. Landmarks come from the album's align.parquet (no second detection)."
        ),
    )
    p.add_argument("--images", required=True, help="folder of aligned images (results/aligned/<album>)")
    p.add_argument(
        "--align-report",
        help="align.parquet with landmarks (default: <images>/align.parquet; without one, DECA-style "
        "<stem>.txt files of 68 'x y' rows beside the images)",
    )
    p.add_argument("--extractor", choices=("deca", "emoca"), required=True)
    p.add_argument("--assets", required=True, help="assets folder (see `dre assets check`)")
    p.add_argument("--emoca-model", default="EMOCA_v2_lr_mse_20", help="EMOCA model folder name inside assets")
    p.add_argument("--out", required=True, help="output codes.parquet (written atomically)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dre.extract.run import ExtractConfig, extract_album

    cfg = ExtractConfig(
        images=args.images,
        extractor=args.extractor,
        assets=args.assets,
        out=args.out,
        align_report=args.align_report,
        emoca_model=args.emoca_model,
        batch_size=args.batch_size,
        device=args.device,
    )
    report = extract_album(cfg)
    print(f"dre extract: {report.summary()} -> {report.out}", flush=True)
    return 0
