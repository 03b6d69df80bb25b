"""The pinned sources of the files ``dre assets fetch`` downloads (standard library only).

Only files published without registration are here: face-alignment's two weight files (the URLs
face-alignment 1.5 itself downloads; their basenames are the names it looks for in the torch hub
cache) and DECA's two data files, from a fixed commit of DECA's repository (``master`` may move).

Checksums: none is recorded yet, because none could be verified from an authoritative source here (the
hexadecimal part of face-alignment's file names is not checked by face-alignment itself, so it is not
treated as a hash). Files are validated by content instead: each must load through the loader
``dre assets check`` runs. Add a sha256 to an entry once it is known; ``fetch`` then checks it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from dre.assets.catalog import FAN4_FILE, FAN_DIR, FAN_FILES, LANDMARK_FILE, S3FD_FILE, TEMPLATE_FILE

DECA_DATA_COMMIT = "bde12c91025d68014e63254103a98fae6d77ef48"
"""A commit of github.com/yfeng95/DECA whose ``data/`` holds both files."""
DECA_DATA_URL = f"https://raw.githubusercontent.com/yfeng95/DECA/{DECA_DATA_COMMIT}/data/{{name}}"


@dataclass(frozen=True)
class Download:
    """One pinned file: where it goes (relative to the assets folder) and where it comes from."""

    rel: str
    url: str
    group: str  # the word of `dre assets fetch` that selects it
    sha256: str | None = None  # only where known from an authoritative source

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]


DOWNLOADS: tuple[Download, ...] = (
    Download(f"{FAN_DIR}/{S3FD_FILE}", FAN_FILES[S3FD_FILE], "fan"),
    Download(f"{FAN_DIR}/{FAN4_FILE}", FAN_FILES[FAN4_FILE], "fan"),
    Download(TEMPLATE_FILE, DECA_DATA_URL.format(name=TEMPLATE_FILE), "deca-data"),
    Download(LANDMARK_FILE, DECA_DATA_URL.format(name=LANDMARK_FILE), "deca-data"),
)
GROUPS = ("fan", "deca-data", "all")
