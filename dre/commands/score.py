"""``dre score``: score a folder of edits (transfer, identity, leakage, residual noise) without re-sampling."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_settings_flags(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`dre.score.ScoreSettings` (shared with ``dre edit``)."""
    from dre.score.quality import NOISE_THRESHOLD
    from dre.score.scorer import LEAK_THRESHOLD

    p.add_argument("--landmarks", choices=("mediapipe", "fan"), default="mediapipe",
                   help="landmark detector run on every picture (fan needs its weights under $TORCH_HOME)")
    p.add_argument("--noise-threshold", type=float, default=NOISE_THRESHOLD,
                   help="grey levels of noise added over the source above which an edit is flagged noisy")
    p.add_argument("--leak-threshold", type=float, default=LEAK_THRESHOLD,
                   help="leakage (untouched codes moved, in units of the source-target distance) marked leaked")


def settings_from_args(args: argparse.Namespace) -> "ScoreSettings":  # noqa: F821
    from dre.score import ScoreSettings

    return ScoreSettings(landmarks=args.landmarks, noise_threshold=args.noise_threshold,
                         leak_threshold=args.leak_threshold)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score edited pictures: transfer, leakage, identity, residual noise (no re-sampling)",
        description=(
            "Run every edited picture, its source photos and the target back through landmark detection and "
            "DECA/EMOCA extraction, and score how far the transferred codes moved to the target's (transfer), "
            "how far the untouched ones moved (leakage), how much the identity shape drifted, and how much "
            "noise the sampler left (flagging failures). Writes <out>/scores.parquet, summary.json, grid.png."
        ),
    )
    p.add_argument("--edits", required=True, help="edit folder (with edit.parquet) or folder of <stem>_<mode>.png")
    p.add_argument("--assets", required=True, help="assets folder (the extractors)")
    p.add_argument("--source", help="aligned source folder or image (default: the sources named in edit.parquet)")
    p.add_argument("--target", help="aligned target folder or image (default: the target named in edit.parquet)")
    p.add_argument("--source-extractor", choices=("deca", "emoca"), help="default: from edit.parquet")
    p.add_argument("--target-extractor", choices=("deca", "emoca"), help="default: from edit.parquet")
    p.add_argument("--emoca-model", default="EMOCA_v2_lr_mse_20")
    add_settings_flags(p)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", required=True, help="output folder (results/scores/<edit>); never the edit folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dre.score import Config, run as run_score

    opt = lambda v: Path(v) if v else None  # noqa: E731
    cfg = Config(
        edits=Path(args.edits), assets=Path(args.assets), out=Path(args.out), source=opt(args.source),
        target=opt(args.target), source_extractor=args.source_extractor, target_extractor=args.target_extractor,
        emoca_model=args.emoca_model, device=args.device, batch_size=args.batch_size,
        settings=settings_from_args(args),
    )
    print(run_score(cfg))
    return 0
