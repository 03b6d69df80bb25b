"""Figures and tables for `snakemake --report`: training loss curves and per-status counts.

Why here and not in the workflow: the report rules only call ``dre report ...``; what a curve or a
summary shows (and that a synthetic-asset run says so) is the package's job, tested like the rest.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from dre.errors import DreError
from dre.safety.atomic import atomic_path
from dre.safety.ownership import PNG_SOFTWARE, claim_file, png_is_ours, text_starts_with
from dre.tables import ALIGN, ALIGN_FILE, CODES, identify

STATUS_HEADER = "status\tcount\texample\n"


def read_metrics(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a training ``metrics.csv`` (written by ``dre train``) as float arrays, sorted by step."""
    path = Path(path)
    if not path.is_file():
        raise DreError(f"--metrics {path}: no such file (it is written by `dre train` into its --run-dir)")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("step")]
    if not rows:
        raise DreError(f"--metrics {path}: no rows yet")
    if "loss" not in rows[0]:
        raise DreError(f"--metrics {path}: no 'loss' column (columns: {', '.join(rows[0])})")
    cols: dict[str, np.ndarray] = {}
    for key in rows[0]:
        try:
            cols[key] = np.array([float(r[key]) if r[key] not in ("", None) else np.nan for r in rows])
        except ValueError:
            continue
    order = np.argsort(cols["step"], kind="stable")
    return {k: v[order] for k, v in cols.items()}


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (shorter at the start), ignoring NaNs."""
    window = max(1, int(window))
    ok = np.isfinite(x)
    c = np.cumsum(np.where(ok, x, 0.0))
    n = np.cumsum(ok)
    lo = np.arange(len(x)) - window
    c_lo = np.where(lo >= 0, c[np.clip(lo, 0, None)], 0.0)
    n_lo = np.where(lo >= 0, n[np.clip(lo, 0, None)], 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (c - c_lo) / (n - n_lo)


def plot_losses(metrics: Sequence[str | Path], labels: Sequence[str], out: str | Path, *, title: str = "",
                synthetic: bool = False) -> None:
    """One PNG: the loss (thin) and its moving average (thick) per run against the step, log-scale y."""
    claim_figure(out, inputs=metrics)
    fig = Figure(figsize=(7, 4), dpi=100)  # no pyplot: no global backend or figure registry to manage
    ax = fig.subplots()
    for path, label in zip(metrics, labels):
        m = read_metrics(path)
        (line,) = ax.plot(m["step"], m["loss"], lw=0.6, alpha=0.35)
        ax.plot(m["step"], moving_average(m["loss"], max(1, len(m["loss"]) // 20)), lw=2, color=line.get_color(),
                label=f"{label} (last {m['loss'][-1]:.4g})")
    ax.set_xlabel("step")
    ax.set_ylabel("P2-weighted loss")
    if all(np.all(read_metrics(p)["loss"] > 0) for p in metrics):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    save_figure(fig, ax, out, title=title, synthetic=synthetic)


def save_figure(fig: Figure, ax, out: str | Path, *, title: str, synthetic: bool) -> None:
    """Title (with the synthetic-assets warning where it applies), lay out, publish atomically.

    Every report figure goes through here so that each carries the ``Software: dre`` tag the ownership
    check recognises on a rerun (callers claim ``out`` with :func:`claim_figure` first).
    """
    full = title + ("\nSYNTHETIC ASSETS - not a real face model" if synthetic else "")
    ax.set_title(full, fontsize=10, color="firebrick" if synthetic else "black")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": PNG_SOFTWARE})


def claim_figure(out: str | Path, inputs: Sequence[str | Path], flag: str = "--out") -> None:
    """Refuse to overwrite a PNG dre did not write (see :func:`dre.safety.ownership.claim_file`)."""
    claim_file(out, evidence=png_is_ours, what="a figure written by dre (PNG with Software: dre)", inputs=inputs,
               flag=flag)


def status_counts(table_path: str | Path) -> list[tuple[str, int, str]]:
    """(status, count, first message) rows of an ``align.parquet`` / codes parquet, most frequent first."""
    path = Path(table_path)
    if path.is_dir():
        path = path / ALIGN_FILE
    table = identify(path, among=(ALIGN, CODES), flag="--table")
    df, _ = table.read(path, columns=("status", "message"), flag="--table")
    out = []
    for status, group in df.groupby("status", sort=False):
        msgs = [m for m in group["message"] if isinstance(m, str) and m]
        out.append((str(status), int(len(group)), msgs[0] if msgs else ""))
    return sorted(out, key=lambda r: (-r[1], r[0]))


def write_status_table(table_path: str | Path, out: str | Path) -> None:
    """TSV ``status, count, example`` (+ a ``total`` row) that Snakemake's report shows as a table."""
    claim_file(out, evidence=text_starts_with(STATUS_HEADER), what="a status table written by dre", inputs=[table_path])
    rows = status_counts(table_path)
    lines = [STATUS_HEADER.rstrip("\n")]
    lines += [f"{s}\t{n}\t{m.replace(chr(9), ' ').replace(chr(10), ' ')}" for s, n, m in rows]
    lines.append(f"total\t{sum(n for _, n, _ in rows)}\t")
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
