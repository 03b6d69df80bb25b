"""``dre score``: score a folder of edits (transfer, identity, leakage, residual noise) without re-sampling."""

from dre.commands.stage import StageCommand

COMMAND = StageCommand(
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
