"""``dre assets check|synth|fetch|add``: validate the assets folder, write synthetic stand-ins, download the
freely downloadable files, or add the archives a user downloaded after registering.

``fetch`` and ``add`` are stages in the package's usual shape (``dre.assets.fetch`` / ``dre.assets.add``
expose ``Config`` and ``run``); their flags come from those dataclasses, their positional words are set
here. Their modules are imported only when their flags are built or they run.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from pathlib import Path

from dre.assets.catalog import DEFAULT_EMOCA_MODEL  # standard library only: cheap at start-up
from dre.errors import DreError
from dre.utils.cliconfig import add_flags, from_namespace


NAME = "assets"


def register(sub: argparse._SubParsersAction, *, flags: bool = True) -> None:
    """Sub-subcommands and their flags (cheap to build: nothing heavy is imported here)."""
    p = sub.add_parser("assets", help="check the assets folder, or write synthetic assets for tests/demo")
    asub = p.add_subparsers(dest="assets_command", metavar="<check|synth|fetch|add>", required=True)
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
    f = asub.add_parser(
        "fetch",
        help="download the freely downloadable files (FAN weights, DECA data files) into their places",
        description=(
            "Download face-alignment's FAN weights (fan) and DECA's head_template.obj and landmark_embedding.npy "
            "(deca-data) from pinned URLs; partial downloads resume, proxies come from http_proxy/https_proxy/"
            "no_proxy, every file is validated like `dre assets check` before it is placed. Valid files are "
            "left untouched. For the registration-gated files use `dre assets add`."
        ),
    )
    f.add_argument("what", nargs="*", default=["all"], metavar="{fan,deca-data,all}",
                   help="what to fetch (default all)")
    if flags:
        add_flags(f, _config("FetchConfig"))
    f.set_defaults(func=run_fetch)
    a = asub.add_parser(
        "add",
        help="add downloaded archives/files (FLAME2020.zip, texture space, deca_model.tar, EMOCA zip) to the folder",
        description=(
            "Recognise each input by its content, extract only the needed members into the documented layout, "
            "validate them and print the `dre assets check` table. Archives are untrusted: traversal, absolute "
            "paths, links and oversized or bomb members are refused; an input adds all its assets or none."
        ),
    )
    a.add_argument("inputs", nargs="+", metavar="ARCHIVE_OR_FILE", help="downloaded archives or asset files")
    if flags:
        add_flags(a, _config("AddConfig"))
    a.set_defaults(func=run_add)


def _config(name: str) -> type:
    """``dre.assets.config.<name>``, imported only when its flags are built or it runs."""
    return getattr(importlib.import_module("dre.assets.config"), name)


def run_fetch(args: argparse.Namespace) -> int:
    """Download what ``what`` names; exit 2 (DreError) when a file could not be fetched."""
    from dre.assets.catalog import GROUPS
    from dre.assets.fetch import run

    words = tuple(w for arg in args.what for w in arg.split(",") if w)
    bad = [w for w in words if w not in GROUPS]
    if bad:
        raise DreError(f"unknown {', '.join(bad)}; use {', '.join(GROUPS)}")
    run(dataclasses.replace(from_namespace(_config("FetchConfig"), args), what=words or ("all",)))
    return 0


def run_add(args: argparse.Namespace) -> int:
    """Add every input, then print the check table (exit 2 when an input was refused)."""
    from dre.assets.add import run

    run(dataclasses.replace(from_namespace(_config("AddConfig"), args), inputs=tuple(Path(p) for p in args.inputs)))
    return 0


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
