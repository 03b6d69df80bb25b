"""``dre video-frames``: decode a driving clip into the folder of frames a driving-sequence edit reads."""

from __future__ import annotations

import argparse
import sys

from dre.utils.cliconfig import add_flags, from_namespace

NAME = "video-frames"


def register(sub: argparse._SubParsersAction, *, flags: bool = True) -> None:
    p = sub.add_parser(
        NAME,
        help="decode a driving video into PNG frames (the target folder of a driving-sequence edit)",
        description=(
            "Keeps frames at an even rate (--fps) up to --max-frames from --start seconds, as frame_00000.png… "
            "plus .frames.json (which video frame each one is). The workflow runs it for an edit whose target "
            "is a video file, then aligns the frames like any target."
        ),
    )
    if flags:
        from dre.edit.video import FramesConfig  # lazy: `dre --help` lists this command without numpy/PIL

        add_flags(p, FramesConfig)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from dre.edit.video import FramesConfig, run  # lazy, as in register

    for line in run(from_namespace(FramesConfig, args)):
        print(line, file=sys.stderr)
    return 0
