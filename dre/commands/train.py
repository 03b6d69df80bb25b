"""``dre train``: stage 1 (generic prior) and stage 2 (personal fine-tune) DiffusionRig training."""

from dre.commands.stage import StageCommand

COMMAND = StageCommand(
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
