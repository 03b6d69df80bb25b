"""A throw-away project layout for workflow tests: this checkout's workflow, config, envs and `dre` plus albums.

The example sheets name `data/ffhq`, `data/affectnet`, `data/obama` and `data/targets/obama_12.png`. The
workflow refuses sheets that point at missing folders, so the layout creates them with one tiny image each
(the images are only file names to Snakemake's planner; nothing here runs a rule).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Layout:
    root: Path

    def sheet(self, name: str) -> Path:
        return self.root / "config" / name

    def append_row(self, name: str, cells: list[str]) -> None:
        with self.sheet(name).open("a", encoding="utf-8") as fh:
            fh.write("\t".join(cells) + "\n")

    def replace_in(self, relpath: str, old: str, new: str) -> None:
        path = self.root / relpath
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {relpath}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def add_album(self, folder: str, n_images: int = 2) -> None:
        target = self.root / folder
        target.mkdir(parents=True, exist_ok=True)
        for i in range(n_images):
            Image.new("RGB", (8, 8), (i * 40, 90, 160)).save(target / f"img_{i:02d}.png")

    def snakemake(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run this environment's Snakemake in the layout (no --use-conda: conda cannot run here)."""
        env = dict(os.environ)
        env["XDG_CACHE_HOME"] = str(self.root / ".cache")
        return subprocess.run(
            [sys.executable, "-m", "snakemake", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def make_layout(root: Path) -> Layout:
    for part in ("workflow", "config", "envs"):
        shutil.copytree(REPO / part, root / part)
    # the workflow imports this checkout's `dre` from the project root (flags, photo suffixes), as in a real checkout
    (root / "dre").symlink_to(REPO / "dre", target_is_directory=True)
    layout = Layout(root)
    for album in ("data/ffhq", "data/affectnet", "data/obama"):
        layout.add_album(album)
    (root / "data" / "targets").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "data" / "targets" / "obama_12.png")
    return layout
