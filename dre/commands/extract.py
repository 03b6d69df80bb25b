"""``dre extract``: DECA or EMOCA FLAME codes for every aligned image (the workflow's extract rule)."""

from dre.commands.stage import StageCommand

COMMAND = StageCommand(
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
