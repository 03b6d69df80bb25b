"""``dre edit``: transfer expression, head pose, lighting or latent from a target onto album photos."""

from dre.commands.stage import StageCommand

COMMAND = StageCommand(
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
