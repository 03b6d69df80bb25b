"""``dre video-frames``: decode a driving clip into the folder of frames a driving-sequence edit reads."""

from dre.commands.stage import StageCommand

COMMAND = StageCommand(
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
