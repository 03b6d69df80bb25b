"""``dre assets fetch``: download the freely downloadable asset files into their places.

Only files their authors publish without registration are fetched (:mod:`dre.assets.catalog` pins them
and says why no checksum is recorded yet); the licensed ones go through ``dre assets add``.

Each file: skipped when a valid one is already in place (whoever put it there); otherwise downloaded
(resuming an earlier partial download), checked against a recorded sha256 where one is known, validated
by the same loader ``dre assets check`` runs, and published by one rename. A file that fails validation
is removed. A file at the destination that is invalid and that dre did not place is never touched.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from dre.assets.catalog import DOWNLOADS, Download
from dre.assets.check import file_validator, problem
from dre.assets.config import FetchConfig
from dre.assets.http import describe_proxy, discard_part, download, part_path
from dre.assets.placement import Placed, folder_lock, record, valid_in_place
from dre.errors import DreError
from dre.safety.atomic import publish_file
from dre.utils.hashing import sha256_file
from dre.utils.synthetic import is_synthetic_assets


def plan(groups: tuple[str, ...], mirror: str | None = None) -> list[tuple[Download, str]]:
    """The pinned entries of ``groups`` with the URL each is fetched from (``mirror``/<name> if given)."""
    want = set(groups)
    picked = [d for d in DOWNLOADS if "all" in want or d.group in want]
    return [(d, f"{mirror.rstrip('/')}/{d.name}" if mirror else d.url) for d in picked]


def fetch_one(root: Path, item: Download, url: str, *, timeout: float, retries: int,
              validate: Callable[[Path], Any], stream: Any = None) -> str:  # fmt: skip
    """Download, check and place one file; returns "present" or "downloaded"."""
    dest = root / item.rel
    if valid_in_place(root, item.rel, validate):  # raises for an invalid file we did not place
        return "present"
    part = download(url, dest, timeout=timeout, retries=retries, label=item.rel, stream=stream)
    if item.sha256 is not None and sha256_file(part) != item.sha256:
        discard_part(part)
        raise DreError(
            f"{url}: the download's sha256 is not the recorded one; it was removed. Try again later or use --mirror"
        )
    why = problem(validate, part)
    if why is not None:
        discard_part(part)
        raise DreError(
            f"{url}: the downloaded file is not a valid {item.name} ({why}); it was removed. The server may have "
            "sent an error page: download it in a browser and run `dre assets add <file> --assets <assets folder>`"
        )
    publish_file(part, dest)
    discard_part(part)  # the sidecar
    record(root, item.rel, url)
    return "downloaded"


def run(cfg: FetchConfig, stream: Any = None) -> list[Placed]:
    """Fetch every file of ``cfg.what``; all files are tried, failures are reported together at the end."""
    out = sys.stderr if stream is None else stream
    root = Path(cfg.assets)
    items = plan(cfg.what, cfg.mirror)
    if cfg.dry_run:
        for item, url in items:
            dest = root / item.rel
            note = " (a partial download will be resumed)" if part_path(dest).exists() else ""
            state = "present" if dest.exists() else "missing"
            print(f"{item.rel}: {state}; would fetch {url} ({describe_proxy(url)}){note}", file=out)
        return [Placed(i.rel, "would download", u) for i, u in items]
    outcomes, errors = [], []
    with folder_lock(root, "dre assets fetch"):
        official = not is_synthetic_assets(root)
        for item, url in items:
            try:
                action = fetch_one(root, item, url, timeout=cfg.timeout, retries=cfg.retries,
                                   validate=file_validator(item.rel, official), stream=out)  # fmt: skip
            except DreError as exc:
                errors.append(f"{item.rel}: {exc}")
                continue
            said = "already present and valid, left untouched" if action == "present" else "downloaded"
            print(f"{item.rel}: {said}", file=out)
            outcomes.append(Placed(item.rel, action, url))
    if errors:
        raise DreError(f"{len(errors)} of {len(items)} file(s) not fetched:\n" + "\n".join(errors))
    return outcomes
