"""Grid marks: which cells of an edit grid are flagged, and the one-line note under every edit.

Shared by ``dre edit`` (its grid.png) and ``dre score`` (the grid of a scored folder), so a flagged
sample looks the same wherever it is shown: a red frame with the reason, and ``t`` (transfer) / ``id``
(shape drift) printed at the foot of every edited cell.
"""

from __future__ import annotations

import math

import numpy as np


def _fmt(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(f) else f"{f:.2f}"


def cell_marks(rows: list[dict], cell_of: list[tuple[int, int]]) -> tuple[dict, dict]:
    """(marks, notes) for :func:`dre.edit.outputs.make_grid`, one entry per scored row at ``cell_of[k]``: the
    red label of a flagged edit (``no face``, ``noisy``, ``no face+noisy``) and, under every scored edit,
    ``t 0.83 id 0.40`` (its transfer and shape drift)."""
    marks, notes = {}, {}
    for row, rc in zip(rows, cell_of):
        if "failed" not in row:
            continue
        notes[rc] = f"t {_fmt(row.get('transfer'))} id {_fmt(row.get('shape_drift'))}"
        if row.get("failed"):
            marks[rc] = str(row.get("failure") or "failed").replace("no_face", "no face").replace(",", "+")
    return marks, notes


def marked_grid(ef, pictures: list[np.ndarray], rows: list[dict], *, size: int, synthetic: bool) -> np.ndarray:
    """rows = sources, columns = source, target, each mode; flagged cells framed (``dre score``'s grid)."""
    from dre.edit import outputs

    mode_names = list(dict.fromkeys(_column(m) for m in ef.modes))
    used = sorted(set(ef.row_source))
    row_of = {s: i for i, s in enumerate(used)}
    blank = np.full((size, size, 3), 255, np.uint8)
    tgt = outputs.resize_square(ef.targets[0].image, size) if ef.targets else np.full((size, size, 3), 200, np.uint8)
    cells = [[outputs.resize_square(ef.sources[s].image, size), tgt] + [blank] * len(mode_names) for s in used]
    cell_of = []
    for k, (s, m) in enumerate(zip(ef.row_source, ef.modes)):
        rc = (row_of[s], 2 + mode_names.index(_column(m)))
        cells[rc[0]][rc[1]] = pictures[k]
        cell_of.append(rc)
    marks, notes = cell_marks(rows, cell_of)
    banner = "SYNTHETIC ASSETS - not a real face reconstruction" if synthetic else ""
    return outputs.make_grid(cells, ["source", "target"] + mode_names, [ef.sources[s].stem for s in used],
                             cell=max(size, 96), banner=banner, marks=marks, notes=notes)


def _column(mode) -> str:
    """A grid column: the mode's name, numbered for the frames of a sequence (which share a name)."""
    return mode.name if mode.frame is None else f"{mode.name} #{mode.frame}"
