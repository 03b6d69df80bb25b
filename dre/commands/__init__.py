"""Subcommands of the ``dre`` CLI, in the order they appear in ``dre --help``.

The stages, ``demo-album`` and ``video-frames`` are the :class:`~dre.commands.stage.StageCommand` objects below
(flags generated from the stage's ``Config``); ``assets`` and ``report`` are small modules with their own
``register``. Every entry has ``NAME`` and ``register(subparsers, flags=...)``.
"""

from dre.commands import assets, report
from dre.commands.stage import StageCommand

ALIGN = StageCommand(
    name="align",
    package="dre.align",
    help="FFHQ-align a photo album (or one image) into size² crops + align.parquet",
    description=(
        "Detect 68 iBUG landmarks per face and apply the FFHQ alignment recipe (eye/mouth quad, shrink, "
        "crop, reflect-pad with blur, quad transform, resize). Writes <output>/<stem>.png per face and "
        "<output>/align.parquet with one row per input file (status, message, landmarks, quad, output). "
        "Bad files are recorded and skipped; the command fails only when no image is usable."
    ),
    done=lambda cfg, report: f"dre align: {report.summary()} -> {cfg.output}/align.parquet",
)

EXTRACT = StageCommand(
    name="extract",
    package="dre.extract",
    help="DECA/EMOCA FLAME codes (shape, tex, exp, pose, cam, light, crop transform) per image",
    description=(
        "Crop each aligned image as DECA does (68-landmark box x1.1, x1.25, similarity warp to 224), run "
        "the DECA coarse encoder (and EMOCA's expression encoder for --extractor emoca) and write one "
        "Parquet row per image: status, message, every code, the crop transform, the extractor and the "
        "asset checksums. Landmarks come from the album's align.parquet (no second detection)."
    ),
    done=lambda cfg, report: f"dre extract: {report.summary()} -> {report.out}",
)

PACK = StageCommand(
    name="pack",
    package="dre.pack",
    help="render the physical buffers and write a versioned LMDB (+ Parquet manifest)",
    description=(
        "Render rendered/normal/albedo buffers from the codes (batched, GPU when present) and write an "
        "LMDB with a metadata record, per-sample PNG image, codes, crop transform and fp16 buffers. "
        "Built in a temporary folder and renamed on success. --import-legacy converts an original "
        "DiffusionRig LMDB through a restricted unpickler."
    ),
    done=lambda cfg, r: f"dre pack: wrote {r.out} ({r.count} samples, {r.skipped} skipped) and {r.manifest}",
)

TRAIN = StageCommand(
    name="train",
    package="dre.train",
    help="train stage 1 (prior LMDBs) or stage 2 (album LMDB); resumable and distributed",
    description=(
        "Train the DiffusionRig model. Stage 1 trains everything on one or more prior LMDBs; stage 2 "
        "initialises from a stage-1 model (ours or an official DiffusionRig model*.pt), freezes the "
        "global encoder and fine-tunes the UNet on a personal album. Checkpoints go to --run-dir; "
        "running the same command again resumes from the newest one. The final model is exported to --out. "
        "Under torchrun, srun or mpiexec every process trains its shard (torch.distributed)."
    ),
    done=lambda cfg, out: str(out),
)

EDIT = StageCommand(
    name="edit",
    package="dre.edit",
    help="edit source photos with a target's expression/pose/light/latent (DDIM)",
    description=(
        "Swap FLAME codes between the source photos and a target face (modes exp, pose, light, latent and "
        "combinations such as exp+pose), re-render the physical buffers, and sample with DDIM from seeded "
        "noise or from the DDIM inversion of the source. Writes <out>/<source_stem>_<mode>.png, grid.png, "
        "the edited buffers and edit.parquet."
    ),
    done=lambda cfg, out: str(out),
)

SCORE = StageCommand(
    name="score",
    package="dre.score",
    help="score edited pictures: transfer, leakage, identity, residual noise (no re-sampling)",
    description=(
        "Run every edited picture, its source photos and the target back through landmark detection and "
        "DECA/EMOCA extraction, and score how far the transferred codes moved to the target's (transfer), "
        "how far the untouched ones moved (leakage), how much the identity shape drifted, and how much "
        "noise the sampler left (flagging failures). Writes <out>/scores.parquet, summary.json, grid.png "
        "(docs/scores.md)."
    ),
    done=lambda cfg, out: str(out),
)

DEMO_ALBUM = StageCommand(
    name="demo-album",
    package="dre.demo",
    config_name="AlbumConfig",
    help="write a demo photo album (variants of public-domain portraits shipped by skimage/matplotlib)",
    description=(
        "Builds deterministic variants (crop, small rotation, flip, colour and lighting changes) of "
        "skimage's astronaut() and camera() and matplotlib's grace_hopper.jpg. Nothing is downloaded; "
        "the photos are never part of the repository. An existing album made with the same flags is "
        "left untouched. --kind prior makes a different, more varied set for stage 1."
    ),
    done=lambda cfg, lines: "\n".join(lines),
    progress=True,
)

VIDEO_FRAMES = StageCommand(
    name="video-frames",
    package="dre.edit.video",
    config_name="FramesConfig",
    help="decode a driving video into PNG frames (the target folder of a driving-sequence edit)",
    description=(
        "Keeps frames at an even rate (--fps) up to --max-frames from --start seconds, as frame_00000.png… "
        "plus .frames.json (which video frame each one is). The workflow runs it for an edit whose target "
        "is a video file, then aligns the frames like any target."
    ),
    done=lambda cfg, lines: "\n".join(lines),
    progress=True,
)

COMMANDS = (ALIGN, EXTRACT, PACK, TRAIN, EDIT, SCORE, assets, DEMO_ALBUM, VIDEO_FRAMES, report)
