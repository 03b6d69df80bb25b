"""``dre assets check|synth``: validate the user's licensed assets, or write synthetic stand-ins."""

from __future__ import annotations

import argparse

from dre.errors import NotImplementedYet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("assets", help="check the assets folder, or write synthetic assets for tests/demo")
    asub = p.add_subparsers(dest="assets_command", metavar="<check|synth>", required=True)
    c = asub.add_parser(
        "check",
        help="table of required files: found, valid, what is wrong, where to obtain it",
        description="Validate FLAME, texture space, template, landmark embedding, DECA and EMOCA files.",
    )
    c.add_argument("--assets", required=True, help="assets folder")
    c.add_argument("--require", default="deca,emoca", help="comma list of what must be valid: deca, emoca")
    c.add_argument("--emoca-model", default="EMOCA_v2_lr_mse_20")
    c.set_defaults(func=run_check)
    s = asub.add_parser(
        "synth",
        help="write a synthetic FLAME-structured assets folder (same file formats, random content)",
        description="Deterministic from --seed. Every output made from these assets says it is synthetic.",
    )
    s.add_argument("--out", required=True, help="folder to write")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=run_synth)


def run_check(args: argparse.Namespace) -> int:
    raise NotImplementedYet("assets check", 4)


def run_synth(args: argparse.Namespace) -> int:
    raise NotImplementedYet("assets synth", 4)
