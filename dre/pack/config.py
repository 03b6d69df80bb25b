"""``PackConfig``: every ``dre pack`` setting, defined once (flags and workflow keys derive from it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dre.errors import DreError
from dre.utils.cliconfig import run_arg, setting


@dataclass
class PackConfig:
    """Every ``dre pack`` flag. The settings are the workflow config's ``pack:`` keys; ``size`` is the
    aligned image size (the rule passes ``align.size``) and ``mean_shape`` an album's sheet column."""

    out: Path = run_arg(help="output LMDB folder")
    images: Path | None = run_arg(None, help="folder of aligned images")
    codes: Path | None = run_arg(None, help="codes.parquet written by `dre extract`")
    assets: Path | None = run_arg(None, help="assets folder (FLAME, texture space, template)")
    manifest: Path | None = run_arg(None, help="Parquet manifest path (default: <out without .lmdb>.parquet)")
    mean_shape: bool = run_arg(False, help="render every sample with the album's mean shape")
    size: int = run_arg(256, help="buffer/image resolution")
    batch_size: int = setting(32, help="samples rendered per batch")
    device: str = setting("auto", help="auto, cpu, cuda or cuda:N")
    import_legacy: Path | None = run_arg(
        None, metavar="OLD_LMDB", help="convert an original DiffusionRig LMDB instead"
    )

    def manifest_path(self) -> Path:
        if self.manifest is not None:
            return Path(self.manifest)
        out = Path(self.out)
        stem = out.name[: -len(".lmdb")] if out.name.endswith(".lmdb") else out.name
        return out.with_name(stem + ".parquet")

    def validate(self) -> None:
        """The two ways to call ``dre pack`` (from codes, or converting a legacy LMDB) do not mix."""
        if self.import_legacy is not None:
            if self.codes is not None or self.images is not None or self.mean_shape:
                raise DreError(
                    "--import-legacy converts an existing LMDB; do not combine it with --images/--codes/--mean-shape"
                )
        elif self.codes is None:
            raise DreError("dre pack needs --codes codes.parquet (and --images, --assets), or --import-legacy OLD.lmdb")
        if self.size <= 0 or self.batch_size <= 0:
            raise DreError("--size and --batch-size must be positive")
