"""``dre pack``: a versioned LMDB of images, FLAME codes and rendered buffers (the workflow's pack rule)."""

from dre.commands.stage import StageCommand

COMMAND = StageCommand(
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
