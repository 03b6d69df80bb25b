"""Assemble an edit folder from an engine result (see :mod:`dre.edit.outputs` for the file formats).

The folder's contents depend only on what was computed and on the few settings of the run's
:class:`~dre.edit.config.EditConfig` that ``edit.parquet`` records (and ``--grid-buffers``), never on the
runner: the writer does not import the command that calls it.

Layout of ``results/edits/<edit>/`` (each file is described in docs/edits.md, Outputs):
``<source_stem>_<mode>.png`` per source × mode, ``grid.png``, ``buffers/<source_stem>_<mode>.npz`` and
``buffers/<source_stem>_source.npz``, ``edit.parquet``, ``attempts.parquet``, ``summary.json``, and for sweeps
and driven sequences ``<source_stem>_<sequence>_<k>.png``, ``<source_stem>_<sequence>.gif/.mp4``,
``<sequence>_sheet.png`` and ``sequences.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from dre.edit import animate, outputs
from dre.edit.config import EditConfig
from dre.edit.engine import EditPlan, as_condition
from dre.edit.flicker import sequence_flicker
from dre.edit.modes import sequence_label, sequences
from dre.edit.inputs import Face
from dre.edit.retry import ScoredEdits
from dre.face3d.codes import Buffers
from dre.safety.ownership import owned_dir
from dre.score.grid import cell_marks
from dre.tables import ATTEMPTS, ATTEMPTS_FILE, DRAW_COLUMNS, EDIT, EDIT_FILE, SCORE_COLUMNS

log = logging.getLogger(__name__)

SEQUENCES_NAME = "sequences.json"  # per sequence and source: frames, animations, flicker (also in edit.parquet)


@dataclass
class EditResult:
    settings: EditConfig  # the run's settings: recorded in every row and the table metadata, obeyed by the grid
    plan: "EditPlan"
    faces: list["Face"]
    targets: list["Face"]  # the target's frames (one for a photo; none when every mode is parametric)
    images: np.ndarray  # (N·M, 3, H, W) in [-1, 1], source-major
    source_buffers: "Buffers"
    edit_buffers: "Buffers"
    noise_seeds: list[int | None]
    scored: ScoredEdits | None = None  # None: --no-scores (the score and draw columns stay empty)
    meta: dict[str, Any] = field(default_factory=dict)


def _buffer_arrays(buf: "Buffers", k: int) -> dict[str, np.ndarray]:
    return {
        name: getattr(buf, name)[k].detach().to("cpu", torch.float16).numpy()
        for name in ("rendered", "normal", "albedo", "alpha")
    }


def _rendered_preview(buf: "Buffers", k: int) -> np.ndarray:
    return outputs.unit_to_uint8(buf.rendered[k].detach().float().cpu().numpy())


def write_edit_folder(out: Path, res: EditResult, *, inputs: Iterable = ()) -> None:
    """Write the whole folder into a temporary sibling and swap it in only when complete."""
    settings, plan = res.settings, res.plan
    n, m = plan.n_sources, len(plan.modes)
    edited_u8 = outputs.to_uint8(res.images)
    size = int(res.images.shape[-1])  # the sources and the target as the model saw them: resized to its size
    sources_u8 = np.stack([outputs.resize_square(f.image, size) for f in res.faces])
    targets_u8 = (np.stack([outputs.resize_square(f.image, size) for f in res.targets]) if res.targets
                  else np.full((1, size, size, 3), 200, np.uint8))  # a grey cell: no target
    target_path = str(res.targets[0].path) if res.targets else None
    edited_cols = plan.edited.to_columns()
    synthetic = bool(res.meta.get("synthetic"))
    # the settings every picture was made with: a column of each row and a key of the table's metadata
    run_settings = {
        "seed": int(settings.seed), "init": settings.init, "steps": int(settings.steps), "eta": float(settings.eta),
        "model": str(settings.model), "source_extractor": settings.source_extractor,
        "target_extractor": settings.target_extractor,
    }
    with owned_dir(out, "dre edit", inputs=inputs) as tmp:
        (tmp / outputs.BUFFER_DIR).mkdir()
        rows = []
        for k in range(plan.n_jobs):
            i, j = plan.job(k)
            md = plan.modes[j]
            stem, mode = plan.stems[i], md.name
            name = f"{stem}_{md.file_label}.png"
            outputs.save_png(tmp / name, edited_u8[k])
            buf_name = f"{outputs.BUFFER_DIR}/{stem}_{md.file_label}.npz"
            outputs.write_npz(tmp / buf_name, _buffer_arrays(res.edit_buffers, k))
            row = {
                "source": str(res.faces[i].path),
                "source_stem": stem,
                "target": target_path,
                "mode": mode,
                **run_settings,
                "noise_seed": res.noise_seeds[i],
                "mean_shape": bool(res.meta.get("mean_shape")),
                "file": name,
                "buffers": buf_name,
                "synthetic": synthetic,
                "sequence": md.sequence,
                "frame": md.frame,
                "params": json.dumps(md.params, sort_keys=True),
                "target_frame": str(res.targets[md.target_frame].path) if md.reads_target and res.targets else None,
            }
            for code, values in edited_cols.items():
                row[code] = values[k].tolist()
            if res.scored is not None:
                row.update(_draw_columns(res.scored, k))
                row.update(res.scored.rows[k])
            else:
                row.update({name: None for name, _ in (*DRAW_COLUMNS, *SCORE_COLUMNS)})
            rows.append(row)
        for i, stem in enumerate(plan.stems):
            outputs.write_npz(tmp / outputs.BUFFER_DIR / f"{stem}_source.npz", _buffer_arrays(res.source_buffers, i))

        labels = ["source", "target"] + [_column_label(md) for md in plan.modes]
        if settings.grid_buffers:
            labels += ["source render"] + [f"{md.name if md.sequence is None else f'#{md.frame}'} render"
                                           for md in plan.modes]
        grid_rows = []
        for i in range(n):
            row_cells = [sources_u8[i], targets_u8[0]] + [edited_u8[i * m + j] for j in range(m)]
            if settings.grid_buffers:
                row_cells += [_rendered_preview(res.source_buffers, i)]
                row_cells += [_rendered_preview(res.edit_buffers, i * m + j) for j in range(m)]
            grid_rows.append(row_cells)
        banner = "SYNTHETIC ASSETS - not a real face reconstruction" if synthetic else ""
        marks, notes = {}, {}
        if res.scored is not None:
            marks, notes = cell_marks(res.scored.rows, [(k // m, 2 + k % m) for k in range(plan.n_jobs)])
        grid = outputs.make_grid(grid_rows, labels, plan.stems, cell=max(size, 96), banner=banner, marks=marks,
                                 notes=notes)
        outputs.save_png(tmp / outputs.GRID_NAME, grid)

        seq_meta = _write_sequences(tmp, res, edited_u8, targets_u8, banner)
        meta = {
            "modes": [md.name for md in plan.modes],
            "sources": [str(f.path) for f in res.faces],
            "target": target_path,
            "sequences": seq_meta,
            **run_settings,
            **{k: v for k, v in res.meta.items() if _jsonable(v)},
        }
        if res.scored is not None:
            summary = res.scored.summary
            meta["score"] = {"settings": summary["settings"], "references": summary["references"],
                             "retry_failed": int(settings.retry_failed)}
            ATTEMPTS.write(tmp / ATTEMPTS_FILE, _draw_rows(res.scored, rows),
                           {"synthetic": synthetic, "retry_failed": int(settings.retry_failed)})
            outputs.write_json(tmp / outputs.SUMMARY_NAME, summary)
        EDIT.write(tmp / EDIT_FILE, rows, meta)


def _column_label(md) -> str:
    """A grid column's heading: the mode, or for a sequence frame its number and parameters."""
    if md.sequence is None:
        return md.name
    params = ",".join(f"{k.split('.')[1]}={v:g}" for k, v in md.params.items() if isinstance(v, float))
    return f"#{md.frame} {params}".strip()


def _write_sequences(tmp: Path, res: EditResult, edited_u8: np.ndarray, targets_u8: np.ndarray, banner: str) -> list:
    """GIF + MP4 per source and sequence, one contact sheet per sequence; returns their metadata with flicker."""
    plan = res.plan
    m = len(plan.modes)
    out = []
    cond = as_condition(res.edit_buffers).cpu().numpy()
    for seq, idx in sequences(plan.modes).items():
        label = sequence_label(seq)
        driven = any(plan.modes[j].reads_target for j in idx) and len(res.targets) > 1
        sheet_rows, sheet_labels = [], []
        if driven:
            sheet_rows.append([targets_u8[plan.modes[j].target_frame] for j in idx])
            sheet_labels.append("target")
        for i, stem in enumerate(plan.stems):
            jobs = [i * m + j for j in idx]
            frames = edited_u8[jobs]
            gif, mp4 = f"{stem}_{label}.gif", f"{stem}_{label}.mp4"
            animate.write_gif(tmp / gif, frames)
            animate.write_mp4(tmp / mp4, frames)
            sheet_rows.append(list(frames))
            sheet_labels.append(stem)
            out.append({"sequence": seq, "source_stem": stem, "frames": [f"{stem}_{plan.modes[j].file_label}.png"
                        for j in idx], "gif": gif, "mp4": mp4, "driven": driven,
                        "flicker": sequence_flicker(res.images[jobs], cond[jobs])})
            fl = out[-1]["flicker"]
            log.info("flicker %s / %s: images %.4f, conditions %.4f, ratio %.3f", seq, stem, fl["images"],
                     fl["conditions"], fl["ratio"])
        # the contact sheet: every frame of the sequence at a glance
        sheet = outputs.make_grid(sheet_rows, [_column_label(plan.modes[j]) for j in idx], sheet_labels,
                                  cell=max(int(edited_u8.shape[1]), 96), banner=banner)
        outputs.save_png(tmp / f"{label}_sheet.png", sheet)
    if out:
        outputs.write_json(tmp / SEQUENCES_NAME, {"sequences": out})
    return out


def _draw_columns(scored: ScoredEdits, k: int) -> dict:
    """Which draw a job's picture is, and the seeds of every re-draw (docs/edits.md, re-sampling)."""
    draws = [d for d in scored.draws if d.job == k]
    kept = next(d for d in draws if d.attempt == scored.kept[k])
    return {
        "attempt": int(scored.kept[k]),
        "attempts": len(draws),
        "attempt_seed": kept.seed,
        "retry_seeds": [int(d.seed) for d in draws if d.attempt > 0],
    }


def _draw_rows(scored: ScoredEdits, rows: list[dict]) -> list[dict]:
    """``attempts.parquet``: one row per draw (first draws, then each retry round), with its scores."""
    out = []
    for d in scored.draws:
        r = rows[d.job]
        out.append({"source_stem": r["source_stem"], "mode": r["mode"], "file": r["file"], "attempt": d.attempt,
                    "seed": d.seed, "init": d.init, "kept": d.attempt == scored.kept[d.job], **d.row})
    return out


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True
