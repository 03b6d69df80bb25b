"""The report's view of an edit's scores: a per-edit table (TSV) and a transfer-vs-identity scatter (PNG).

Read from the scored ``edit.parquet`` of an edit folder (or a ``dre score`` folder's ``scores.parquet``).
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure

from dre import tables
from dre.errors import DreError
from dre.report import claim_figure, save_figure
from dre.safety.atomic import atomic_path
from dre.safety.ownership import claim_file, text_starts_with

TABLE_COLUMNS = ("source_stem", "mode", "transfer", "leakage", "shape_drift", "noise_excess", "landmarks_status",
                 "failure", "attempts")
"""Columns of the report's table, in order (``attempts`` only when the edit re-drew failures)."""

TABLE_HEADER_START = "source_stem\tmode\t"
"""How every score table written here begins (both tables always carry these two columns): the evidence
that an existing file at ``--table`` is ours to replace."""


def read_scored(folder: str | Path) -> tuple[list[dict], bool]:
    """(rows, synthetic) of a scored edit folder: its ``edit.parquet`` (versions that carry scores) or the
    ``scores.parquet`` of a ``dre score`` folder, read through their owner :mod:`dre.tables`."""
    folder = Path(folder)
    problems = []
    for table in (tables.EDIT, tables.EDIT_V2, tables.SCORES):  # newest first: a version mismatch is a DreError
        path = folder / table.name
        if not path.is_file():
            continue
        try:
            df, meta = table.read(path)
        except DreError as exc:
            problems.append(str(exc))
            continue
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in df.to_dict("records")]
        if not rows:
            raise DreError(f"{path} has no rows")
        return rows, bool(meta.get("synthetic")) or any(bool(r.get("synthetic")) for r in rows)
    why = f" ({'; '.join(problems)})" if problems else ""
    raise DreError(f"{folder}: no scored edit.parquet or scores.parquet{why}; score it with `dre score --edits {folder}`")


def _cell(v) -> str:
    if v is None:  # read_scored has turned NaN into None
        return ""
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v).replace("\t", " ").replace("\n", " ")


def write_table(folder: str | Path, out: str | Path) -> None:
    """TSV, one line per edited picture, flagged ones first, then by mode and source."""
    claim_file(out, evidence=text_starts_with(TABLE_HEADER_START), what="a score table written by dre",
               inputs=[folder], flag="--table")
    rows, synthetic = read_scored(folder)
    cols = [c for c in TABLE_COLUMNS if c in rows[0]]
    rows = sorted(rows, key=lambda r: (not r["failed"], str(r["mode"]), str(r["source_stem"])))
    lines = ["\t".join(cols + (["note"] if synthetic else []))]
    for r in rows:
        lines.append("\t".join([_cell(r.get(c)) for c in cols] + (["synthetic assets"] if synthetic else [])))
    with atomic_path(out) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot_scatter(folder: str | Path, out: str | Path, *, title: str = "") -> None:
    """Transfer (x) against shape drift (y), one point per source × mode, coloured by mode.

    Flagged pictures are red crosses; those with no face have no scores and sit on a strip left of x = 0.
    """
    claim_figure(out, inputs=[folder], flag="--plot")
    rows, synthetic = read_scored(folder)
    fig = Figure(figsize=(6.5, 4.5), dpi=100)  # no pyplot: no global backend or figure registry to manage
    ax = fig.subplots()
    modes = list(dict.fromkeys(str(r["mode"]) for r in rows))
    colours = colormaps["tab10"]
    ys = [r["shape_drift"] for r in rows if r.get("shape_drift") is not None]  # read_scored: None, never NaN
    y_nf = (max(ys) if ys else 1.0) * 0.5
    for i, mode in enumerate(modes):
        ok = [r for r in rows if str(r["mode"]) == mode and not r["failed"]]
        pts = [(0.0 if r["transfer"] is None else r["transfer"], 0.0 if r["shape_drift"] is None else r["shape_drift"])
               for r in ok]
        if pts:
            ax.scatter(*zip(*pts), s=36, color=colours(i % 10), label=f"{mode} ({len(pts)})", edgecolor="k", lw=0.4)
    bad = [r for r in rows if r["failed"]]
    if bad:
        pts = [(-0.08 if r["transfer"] is None else r["transfer"],
                y_nf if r["shape_drift"] is None else r["shape_drift"]) for r in bad]
        ax.scatter(*zip(*pts), s=60, marker="x", color="red", lw=2, label=f"flagged ({len(bad)})")
    ax.axvline(0.0, color="grey", lw=0.5)
    ax.set_xlim(-0.15, 1.05)
    ax.set_xlabel("transfer (0 = source's codes, 1 = target's)")
    ax.set_ylabel("shape drift (album spreads; 0 = source's shape)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, ax, out, title=title, synthetic=synthetic)

