"""``dre demo-album``: write the built-in demo's photos (made from package-shipped public-domain portraits)."""

from __future__ import annotations

import argparse
import sys

from dre.utils.cliconfig import add_flags, from_namespace

NAME = "demo-album"


def register(sub: argparse._SubParsersAction, *, flags: bool = True) -> None:
    p = sub.add_parser(
        NAME,
        help="write a demo photo album (variants of public-domain portraits shipped by skimage/matplotlib)",
        description=(
            "Builds deterministic variants (crop, small rotation, flip, colour and lighting changes) of "
            "skimage's astronaut() and camera() and matplotlib's grace_hopper.jpg. Nothing is downloaded; "
            "the photos are never part of the repository. An existing album made with the same flags is "
            "left untouched. --kind prior makes a different, more varied set for stage 1."
        ),
    )
    if flags:
        from dre.demo import AlbumConfig  # lazy: `dre --help` lists this command without loading numpy/PIL

        add_flags(p, AlbumConfig)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from dre.demo import AlbumConfig, run  # lazy, as in register

    for line in run(from_namespace(AlbumConfig, args)):
        print(line, file=sys.stderr)
    return 0
