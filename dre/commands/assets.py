"""``dre assets check|synth``: validate the user's licensed assets, or write synthetic stand-ins."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dre.assets.catalog import DEFAULT_EMOCA_MODEL  # standard library only: cheap at start-up
from dre.errors import DreError


NAME = "assets"


def register(sub: argparse._SubParsersAction, *, flags: bool = True) -> None:
    """Sub-subcommands and their flags (cheap to build: nothing heavy is imported here)."""
    p = sub.add_parser("assets", help="check the assets folder, or write synthetic assets for tests/demo")
    asub = p.add_subparsers(dest="assets_command", metavar="<check|synth>", required=True)
    c = asub.add_parser(
        "check",
        help="table of required files: found, valid, what is wrong, where to obtain it",
        description="Validate FLAME, texture space, template, landmark embedding, DECA and EMOCA files.",
    )
    c.add_argument("--assets", required=True, help="assets folder")
    c.add_argument("--require", default="deca,emoca", help="comma list of what must be valid: deca, emoca, fan")
    c.add_argument("--emoca-model", default=DEFAULT_EMOCA_MODEL,
                   help=f"EMOCA model folder name inside <assets>/emoca/ (default {DEFAULT_EMOCA_MODEL})")
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
    """Print the asset table; exit 1 when a required asset is missing or invalid."""
    from dre.assets.check import check_assets, format_table
    from dre.utils.synthetic import is_synthetic_assets, warn_synthetic

    root = Path(args.assets)
    if not root.is_dir():
        raise DreError(f"--assets {root}: no such folder (create it and put the files listed by this command there)")
    if is_synthetic_assets(root):
        warn_synthetic(str(root))
    rows = check_assets(root, require=args.require.split(","), emoca_model=args.emoca_model)
    print(format_table(rows))
    bad = [r for r in rows if r.required and not r.ok]
    if bad:
        print(
            f"\n{len(bad)} required asset(s) missing or invalid: {', '.join(r.name for r in bad)}. "
            "Put the files named above into the assets folder (see 'where to get it').",
            file=sys.stderr,
        )
        return 1
    print(f"\nall required assets present and valid ({args.require})", file=sys.stderr)
    return 0


def run_synth(args: argparse.Namespace) -> int:
    """Write the synthetic assets folder (replaced atomically)."""
    from dre.face3d.synth import write_synthetic_assets
    from dre.utils.synthetic import warn_synthetic

    out = write_synthetic_assets(args.out, seed=args.seed)
    warn_synthetic(f"written to {out}")
    print(out)
    return 0
