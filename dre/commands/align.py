"""``dre align``: FFHQ-style aligned crops from a raw photo album (the workflow's align rule)."""

from dre.commands.stage import StageCommand

COMMAND = StageCommand(
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
