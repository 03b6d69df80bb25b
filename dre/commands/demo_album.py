"""``dre demo-album``: write the built-in demo's photos (made from package-shipped public-domain portraits)."""

from dre.commands.stage import StageCommand

COMMAND = StageCommand(
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
