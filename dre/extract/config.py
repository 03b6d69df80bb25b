"""``ExtractConfig``: every ``dre extract`` setting, defined once (flags and workflow keys derive from it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dre.errors import DreError
from dre.assets.catalog import DEFAULT_EMOCA_MODEL, EXTRACTORS
from dre.utils.cliconfig import run_arg, setting



def emoca_model_arg() -> Any:
    """The ``--emoca-model`` field, shared by every config that loads EMOCA (extract, edit).

    A run argument, not a stage setting: the workflow config has one top-level ``emoca_model`` key that
    every rule passes.
    """
    return run_arg(DEFAULT_EMOCA_MODEL, help="EMOCA model folder name inside <assets>/emoca/")


@dataclass
class ExtractConfig:
    """Every ``dre extract`` flag, typed (the settings are the workflow config's ``extract:`` keys)."""

    images: Path = run_arg(help="folder of aligned images (results/aligned/<album>)")
    extractor: str = run_arg(choices=EXTRACTORS, help="FLAME code regressor")
    assets: Path = run_arg(help="assets folder (see `dre assets check`)")
    out: Path = run_arg(help="output codes.parquet (written atomically)")
    align_report: Path | None = run_arg(
        None,
        help="align.parquet with landmarks (default: <images>/align.parquet; without one, DECA-style "
        "<stem>.txt files of 68 'x y' rows beside the images)",
    )
    emoca_model: str = emoca_model_arg()
    batch_size: int = setting(32, help="images per encoder batch")
    device: str = setting("auto", help="auto, cpu, cuda or cuda:N")

    def __post_init__(self) -> None:
        self.images, self.assets, self.out = Path(self.images), Path(self.assets), Path(self.out)
        self.align_report = Path(self.align_report) if self.align_report else None

    def validate(self) -> None:
        if self.extractor not in EXTRACTORS:
            raise DreError(f"--extractor {self.extractor!r}: use deca or emoca")
        if self.batch_size < 1:
            raise DreError(f"--batch-size {self.batch_size}: must be at least 1")
        if not self.images.is_dir():
            raise DreError(f"--images {self.images} is not a folder (expected `dre align` output)")
        if self.align_report is not None and not self.align_report.is_file():
            raise DreError(f"--align-report {self.align_report} does not exist")
        if not self.assets.is_dir():
            raise DreError(f"--assets {self.assets} is not a folder (see `dre assets check --assets DIR`)")
