"""The ``dre`` command: one subcommand per workflow rule, plus ``dre assets``, ``demo-album`` and ``report``.

Each stage subcommand's flags are generated from the stage's ``Config`` dataclass
(``dre/commands/stage.py``, ``dre/utils/cliconfig.py``), and all it does is build that ``Config`` and call
the stage's ``run(cfg)``. Only the invoked subcommand's flags are built, so ``dre align`` does not import
the training stack. Nothing here reads the workflow config: the Snakemake rules pass every value as a flag.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Sequence

from dre import __version__
from dre.commands import COMMANDS
from dre.errors import DreError


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``command``, only that subcommand gets its flags (the others list their name)."""
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
    for entry in COMMANDS:
        entry.register(sub, flags=command is None or entry.NAME == command)
    return parser


def parse_config(argv: Sequence[str]) -> Any:
    """The stage ``Config`` that ``dre <argv>`` would run with (e.g. ``["train", "--stage", "1", ...]``)."""
    args = build_parser(argv[0]).parse_args(list(argv))
    entry = next(e for e in COMMANDS if e.NAME == args.command)
    return entry.config(args)


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not a top-level option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command(argv))
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
