"""``dre demo-album``: write the built-in demo's photos (made from package-shipped public-domain portraits)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo-album",
        help="write a demo photo album (variants of public-domain portraits shipped by skimage/matplotlib)",
        description=(
            "Builds deterministic variants (crop, small rotation, flip, colour and lighting changes) of "
            "skimage's astronaut() and camera() and matplotlib's grace_hopper.jpg. Nothing is downloaded; "
            "the photos are never part of the repository. An existing album made with the same flags is "
            "left untouched. --kind prior makes a different, more varied set for stage 1."
        ),
    )
    p.add_argument("--out", required=True, help="album folder to write (replaced atomically)")
    p.add_argument("--kind", choices=("personal", "prior"), default="personal")
    p.add_argument("--n", type=int, default=12, help="number of photos (default 12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", help="also write the demo edit's target photo to this .jpg file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dre.demo import build_album, build_target

    made = build_album(args.out, args.kind, args.n, args.seed)
    print(f"{args.out}: {'written' if made else 'up to date'} ({args.n} {args.kind} photos)", file=sys.stderr)
    if args.target:
        made = build_target(args.target, args.seed)
        print(f"{args.target}: {'written' if made else 'up to date'} (demo target)", file=sys.stderr)
    return 0
