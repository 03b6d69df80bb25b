"""``dre pack``: a versioned LMDB of images, FLAME codes and rendered buffers (the workflow's pack rule)."""

from __future__ import annotations

import argparse

from dre.errors import NotImplementedYet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pack",
        help="render the physical buffers and write a versioned LMDB (+ Parquet manifest)",
        description=(
            "Render rendered/normal/albedo buffers from the codes (batched, GPU when present) and write an "
            "LMDB with a metadata record, per-sample PNG image, codes, crop transform and fp16 buffers. "
            "Built in a temporary folder and renamed on success. --import-legacy converts an original "
            "DiffusionRig LMDB through a restricted unpickler."
        ),
    )
    p.add_argument("--images", help="folder of aligned images")
    p.add_argument("--codes", help="codes.parquet written by `dre extract`")
    p.add_argument("--assets", help="assets folder (FLAME, texture space, template)")
    p.add_argument("--out", required=True, help="output LMDB folder")
    p.add_argument("--manifest", help="Parquet manifest path (default: <out without .lmdb>.parquet)")
    p.add_argument("--mean-shape", action="store_true", help="render every sample with the album's mean shape")
    p.add_argument("--size", type=int, default=256, help="buffer/image resolution (default 256)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--import-legacy", metavar="OLD_LMDB", help="convert an original DiffusionRig LMDB instead")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYet("pack", 5)
