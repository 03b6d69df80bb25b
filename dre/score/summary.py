"""The per-edit summary of scored rows (``summary.json``) and a one-line text version for logs.

JSON has no NaN: undefined numbers (a mode with nothing to transfer, an album of one photo) are null.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

if TYPE_CHECKING:
    from dre.score.scorer import Scorer

SCHEMA = 1


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else round(f, 6)


def _agg(values: Iterable[Any], fn) -> float | None:
    arr = np.array([f for f in (_num(v) for v in values) if f is not None], dtype=np.float64)
    return _num(fn(arr)) if arr.size else None


def summarise(rows: list[dict], scorer: "Scorer", *, synthetic: bool) -> dict:
    """Counts of flagged pictures and per-mode means of the headline scores, with the scorer's settings and
    how it found its references."""
    by_mode: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_mode[str(r["mode"])].append(r)
    modes = {}
    for mode, rs in by_mode.items():
        modes[mode] = {
            "n": len(rs),
            "flagged": sum(bool(r["failed"]) for r in rs),
            "no_face": sum(r["landmarks_status"] != "ok" for r in rs),
            "noisy": sum(bool(r["noisy"]) for r in rs),
            "leaked": sum(bool(r["leaked"]) for r in rs),
            "transfer_mean": _agg((r["transfer"] for r in rs), np.mean),
            "transfer_min": _agg((r["transfer"] for r in rs), np.min),
            "leakage_mean": _agg((r["leakage"] for r in rs), np.mean),
            "leakage_max": _agg((r["leakage"] for r in rs), np.max),
            "shape_drift_mean": _agg((r["shape_drift"] for r in rs), np.mean),
            "noise_excess_mean": _agg((r["noise_excess"] for r in rs), np.mean),
            "noise_excess_max": _agg((r["noise_excess"] for r in rs), np.max),
        }
    out = {
        "schema": SCHEMA,
        "synthetic": bool(synthetic),
        "n_edits": len(rows),
        "n_flagged": sum(bool(r["failed"]) for r in rows),
        "flagged": [str(r["file"]) for r in rows if r["failed"]],
        "settings": asdict(scorer.settings),
        "references": scorer.references(),
        "by_mode": modes,
    }
    if rows and "attempts" in rows[0]:
        out["n_retried"] = sum(int(r["attempts"]) > 1 for r in rows)
        out["n_attempts"] = sum(int(r["attempts"]) for r in rows)
    return out


def one_line(summary: dict) -> str:
    """``12 edits, 1 flagged; exp: transfer 0.41, leakage 0.20, shape drift 0.8`` (for logs and stdout)."""
    parts = []
    for mode, s in summary["by_mode"].items():
        t, lk, sd = s["transfer_mean"], s["leakage_mean"], s["shape_drift_mean"]
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        parts.append(f"{mode}: transfer {fmt(t)}, leakage {fmt(lk)}, shape drift {fmt(sd)}")
    head = f"{summary['n_edits']} edits, {summary['n_flagged']} flagged"
    if summary.get("synthetic"):
        head += " (SYNTHETIC assets)"
    return head + ("; " + "; ".join(parts) if parts else "")
