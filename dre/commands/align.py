"""``dre align``: FFHQ-style aligned crops from a raw photo album (the workflow's align rule)."""

from __future__ import annotations

import argparse



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align",
        help="FFHQ-align a photo album (or one image) into size² crops + align.parquet",
        description=(
            "Detect 68 iBUG landmarks per face and apply the FFHQ alignment recipe (eye/mouth quad, shrink, "
            "crop, reflect-pad with blur, quad transform, resize). Writes <output>/<stem>.png per face and "
            "<output>/align.parquet with one row per input file (status, message, landmarks, quad, output). "
            "Bad files are recorded and skipped; the command fails only when no image is usable."
        ),
    )
    p.add_argument("--input", required=True, help="album folder, or a single image file")
    p.add_argument("--output", required=True, help="output folder (created; replaced atomically)")
    p.add_argument("--size", type=int, default=256, help="output resolution (default 256)")
    p.add_argument(
        "--backend",
        choices=("fan", "mediapipe", "sidecar"),
        default="fan",
        help="landmarks: fan = face-alignment 2D-FAN (weights in $TORCH_HOME/hub/checkpoints), "
        "mediapipe = offline face mesh mapped to 68 points, sidecar = <image>.txt/.npy 68x2 files",
    )
    p.add_argument(
        "--multi-face",
        choices=("largest", "all", "skip"),
        default="largest",
        help="policy for photos with several faces (default largest; all writes <stem>_1.png, ...)",
    )
    p.add_argument("--min-face", type=float, default=64.0, help="skip faces whose eye-mouth quad is smaller (px)")
    p.add_argument(
        "--already-aligned",
        action="store_true",
        help="images are already FFHQ-aligned (e.g. FFHQ): only detect landmarks and index them, no warping",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (fan back-end)")
    p.add_argument("--batch-size", type=int, default=8, help="images per detection batch where supported")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dre.align.run import AlignConfig, align_album

    cfg = AlignConfig(
        input=args.input,
        output=args.output,
        size=args.size,
        backend=args.backend,
        multi_face=args.multi_face,
        min_face=args.min_face,
        already_aligned=args.already_aligned,
        device=args.device,
        batch_size=args.batch_size,
    )
    report = align_album(cfg)
    print(f"dre align: {report.summary()} -> {cfg.output}/align.parquet", flush=True)
    return 0
