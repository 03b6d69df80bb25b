"""The ``Config`` of ``dre assets fetch`` and ``dre assets add`` (standard library only, so building
the CLI's flags does not import the loaders behind them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dre.assets.archive import Limits
from dre.utils.cliconfig import run_arg


@dataclass
class FetchConfig:
    """``dre assets fetch``: what to download into which assets folder, and how."""

    assets: Path = run_arg(help="assets folder (created if absent)")
    mirror: str | None = run_arg(
        None, metavar="URL",
        help="base URL of a mirror holding the same file names (an institute's copy); default: the pinned URLs",
    )
    timeout: float = run_arg(30.0, help="seconds without an answer before a connection counts as stalled")
    retries: int = run_arg(3, help="retries after a cut or stalled connection (each resumes the partial file)")
    dry_run: bool = run_arg(False, help="list what would be fetched, from where, through which proxy; write nothing")
    what: tuple[str, ...] = field(default=("all",))  # the positional words: fan, deca-data, all


@dataclass
class AddConfig:
    """``dre assets add``: which downloads go into which assets folder."""

    assets: Path = run_arg(help="assets folder (created if absent)")
    require: str = run_arg("deca,emoca", help="what the closing `dre assets check` table requires: deca, emoca, fan")
    emoca_model: str | None = run_arg(
        None, help="EMOCA model the closing table shows (default: the one just added, else EMOCA_v2_lr_mse_20)"
    )
    inputs: tuple[Path, ...] = field(default=())  # the positional ARCHIVE_OR_FILE words
    limits: Limits = field(default_factory=Limits)  # for Python callers (tests lower the caps)
