"""The ``dre`` command: one subcommand per workflow rule, plus ``dre assets check|synth``.

Each subcommand lives in ``dre/commands/<name>.py`` and exposes ``register(subparsers)``; the module
owns its flags (they mirror docs/ARCHITECTURE.md) and turns them into the typed dataclasses of the
engine it calls. Nothing here reads the workflow config: the Snakemake rules pass every value as a flag.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from dre import __version__
from dre.commands import COMMAND_MODULES
from dre.errors import DreError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dre",
        description=(
            "DiffusionRig-Emo: FFHQ alignment, DECA/EMOCA FLAME extraction, LMDB packing, two-stage "
            "DiffusionRig training and DDIM edits (expression, pose, lighting). Each subcommand is one "
            "Snakemake rule; run `dre <command> --help` for its flags."
        ),
    )
    parser.add_argument("--version", action="version", version=f"dre {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        result = args.func(args)
    except DreError as exc:
        print(f"dre {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"dre {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
