"""What ``dre score`` scores: the pictures of an edit folder, their sources and the target.

Two kinds of folder are accepted:

- an edit folder written by ``dre edit``: ``edit.parquet`` names every picture (``file``), its source
  photo, the target photo, the mode and the extractors;
- any folder of edited pictures named ``<source_stem>_<mode>.png`` (the ``dre edit`` convention), with
  ``--source`` (the aligned album folder or one aligned photo) and ``--target`` given on the command line.

``--source`` / ``--target`` / the extractor flags, when given, override what ``edit.parquet`` says (e.g.
when the folder moved; a driven edit's ``--target`` is its frames folder, matched frame by frame by file
name). Sources and targets are read as ``dre edit`` reads them, with their alignment landmarks (the
fallback when detection on the re-sized reference fails).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dre.edit.inputs import Face, list_sources, load_target, load_targets, read_image
from dre.edit.modes import Mode, parse_mode
from dre.errors import DreError
from dre.tables import EDIT_FILE, read_edit_rows
from dre.utils.images import list_images

log = logging.getLogger(__name__)

NOT_EDITS = ("grid",)
"""Picture stems in an edit folder that are not edits."""


@dataclass
class EditFolder:
    """The rows to score (one per edited picture) and the pictures they refer to."""

    folder: Path
    rows: list[dict]  # edit.parquet rows (or the columns source, source_stem, target, mode, file)
    sources: list[Face]
    targets: list[Face]  # the target, or the frames of a driving sequence; none for parametric edits only
    row_source: list[int]  # index into sources per row
    modes: list[Mode]  # per row
    source_extractor: str
    target_extractor: str
    synthetic: bool


def _rows_from_names(folder: Path) -> list[dict]:
    """Rows for a plain folder: every ``<stem>_<mode>.png``; other pictures are skipped with a note."""
    rows, skipped = [], []
    for p in list_images(folder):
        if p.stem in NOT_EDITS:
            continue
        stem, sep, mode = p.stem.rpartition("_")
        try:
            parsed = parse_mode(mode, flag=str(p)) if sep else None
        except DreError:
            parsed = None
        if parsed is None or not stem:
            skipped.append(p.name)
            continue
        rows.append({"source_stem": stem, "mode": parsed.name, "file": p.name})
    if skipped:
        log.warning("not scored (names are not <source_stem>_<mode>.png): %s", ", ".join(skipped))
    if not rows:
        raise DreError(f"--edits {folder}: no pictures named <source_stem>_<mode>.png (and no {EDIT_FILE})")
    return rows


def _one(values: set, what: str, folder: Path):
    values = {v for v in values if v not in (None, "")}
    if len(values) > 1:
        raise DreError(f"--edits {folder}: {EDIT_FILE} mixes several {what} ({sorted(map(str, values))}); "
                       "score one edit at a time")
    return next(iter(values), None)


def read_edit_folder(folder: Path, *, source: Path | None = None, target: Path | None = None,
                     source_extractor: str | None = None, target_extractor: str | None = None) -> EditFolder:
    """Everything needed to score ``folder``; errors say which flag or file is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DreError(f"--edits {folder} is not a folder")
    table = folder / EDIT_FILE
    if table.is_file():
        rows, meta = read_edit_rows(table, flag="--edits")
        rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]
        if not rows:
            raise DreError(f"{table} has no rows")
    else:
        rows, meta = _rows_from_names(folder), {}
    frame_paths = list(dict.fromkeys(str(r["target_frame"]) for r in rows if r.get("target_frame")))
    target_path = target or (None if len(frame_paths) > 1 else _one({r.get("target") for r in rows}, "targets", folder))
    s_kind = source_extractor or _one({r.get("source_extractor") for r in rows}, "source extractors", folder)
    t_kind = target_extractor or _one({r.get("target_extractor") for r in rows}, "target extractors", folder)
    for flag, kind in (("--source-extractor", s_kind), ("--target-extractor", t_kind)):
        if kind not in ("deca", "emoca"):
            raise DreError(f"{flag} must be deca or emoca (got {kind!r}); {folder} does not say which was used")
    if target is not None and len(frame_paths) > 1:  # a driven sequence whose frames folder is given (e.g. moved)
        targets = load_targets(Path(target))
        by_name = {t.path.name: k for k, t in enumerate(targets)}
        missing = [Path(p).name for p in frame_paths if Path(p).name not in by_name]
        if missing:
            raise DreError(f"--target {target}: {folder} was driven by the frames {', '.join(missing)}, which this "
                           f"folder does not hold (it has {', '.join(sorted(by_name))}); pass the frames folder "
                           "the edit was driven by")
        frame_index = {p: by_name[Path(p).name] for p in frame_paths}
    elif target_path is not None:
        targets, frame_index = [load_target(Path(target_path))], {}
    elif frame_paths:  # a driven sequence: each row is scored against its own target frame
        targets, frame_index = [load_target(Path(p)) for p in frame_paths], {p: k for k, p in enumerate(frame_paths)}
    else:
        targets, frame_index = [], {}
    if source is not None:
        faces = list_sources(Path(source))
    else:
        paths = list(dict.fromkeys(r.get("source") for r in rows))
        if any(p in (None, "") for p in paths):
            raise DreError(f"--edits {folder}: pass --source (the aligned album folder); the rows do not name their sources")
        faces = [list_sources(Path(p))[0] for p in paths]
    by_stem = {f.stem: k for k, f in enumerate(faces)}
    row_source, modes = [], []
    for r in rows:
        stem = str(r.get("source_stem") or Path(str(r.get("source"))).stem)
        if stem not in by_stem:
            raise DreError(f"--edits {folder}: {r.get('file')} edits source {stem!r}, which is not among the sources "
                           f"({', '.join(sorted(by_stem)) or 'none'})")
        if not (folder / str(r.get("file"))).is_file():
            raise DreError(f"--edits {folder}: the edited picture {r.get('file')} is missing")
        row_source.append(by_stem[stem])
        k = frame_index.get(str(r.get("target_frame")), 0)
        mode = parse_mode(str(r.get("mode")), flag=f"{folder / EDIT_FILE} mode")
        if r.get("frame") is not None:
            mode = replace(mode, sequence=r.get("sequence"), frame=int(r["frame"]), target_frame=k)
        if mode.reads_target and not targets:
            raise DreError(f"--edits {folder}: {r.get('file')} ({mode.name}) read a target, but {EDIT_FILE} names none: "
                           "pass --target (the aligned target) and --source")
        modes.append(mode)
    synthetic = bool(meta.get("synthetic")) or any(bool(r.get("synthetic")) for r in rows)
    return EditFolder(folder, rows, faces, targets, row_source, modes, s_kind, t_kind, synthetic)


def read_pictures(ef: EditFolder) -> list[np.ndarray]:
    """The edited pictures of every row (RGB uint8), all the same square size."""
    pics = [read_image(ef.folder / str(r["file"])) for r in ef.rows]
    shapes = {p.shape for p in pics}
    if len(shapes) != 1 or pics[0].shape[0] != pics[0].shape[1]:
        raise DreError(f"--edits {ef.folder}: the edited pictures must share one square size (found {sorted(shapes)})")
    return pics
