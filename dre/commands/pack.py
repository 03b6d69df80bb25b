"""``dre pack``: a versioned LMDB of images, FLAME codes and rendered buffers (the workflow's pack rule)."""

from __future__ import annotations

import argparse
import contextlib
import signal
from pathlib import Path
from typing import Iterator

from dre.errors import DreError


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


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (what Snakemake and SLURM send) into KeyboardInterrupt so the atomic build cleans up."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a test runner thread): nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    from dre.pack.run import PackConfig, import_legacy, pack_album

    def opt(v: str | None) -> Path | None:
        return None if v is None else Path(v)

    cfg = PackConfig(
        out=Path(args.out), images=opt(args.images), codes=opt(args.codes), assets=opt(args.assets),
        manifest=opt(args.manifest), mean_shape=args.mean_shape, size=args.size, batch_size=args.batch_size,
        device=args.device, import_legacy=opt(args.import_legacy),
    )  # fmt: skip
    with _terminate_as_interrupt():
        if cfg.import_legacy is not None:
            if cfg.codes is not None or cfg.images is not None or cfg.mean_shape:
                raise DreError("--import-legacy converts an existing LMDB; do not combine it with --images/--codes/--mean-shape")
            result = import_legacy(cfg)
        else:
            if cfg.codes is None:
                raise DreError("dre pack needs --codes codes.parquet (and --images, --assets), or --import-legacy OLD.lmdb")
            result = pack_album(cfg)
    print(f"dre pack: wrote {result.out} ({result.count} samples, {result.skipped} skipped) and {result.manifest}")
    return 0
