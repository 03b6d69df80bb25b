"""Re-sampling of failed edits (``dre edit --retry-failed N``): new recorded seeds, the best draw kept.

A picture flagged by its scores (no face found in it, or residual noise; :mod:`dre.score`) is drawn
again from fresh Gaussian noise, at most N times, until a draw is not flagged. Every draw is kept in the
record (``attempts.parquet``) with its seed and scores; the picture written is the best draw
(:func:`dre.score.scorer.rank_key`: not failed first, then more transfer, then less noise).

Seeds: draw ``a ≥ 1`` of job (source stem, mode) uses :func:`retry_seed` of (run seed, stem, mode, a),
so a rerun draws the same pictures, and one draw is reproduced from its recorded seed alone: x_T is
``torch.randn((1, 3, S, S))`` from a CPU generator seeded with it, sampled with the job's conditions
(with η > 0 the per-step noise comes from a generator seeded with :func:`eta_seed` of it). A retry
starts from noise also for ``--init inversion``: the inversion is deterministic, re-running it would
give the same picture back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from dre.score.scorer import rank_key


def retry_seed(seed: int, stem: str, mode: str, attempt: int) -> int:
    """The x_T seed of draw ``attempt`` (≥ 1) of one source × mode (63-bit, from a hash)."""
    digest = hashlib.sha256(f"dre-edit-retry:{int(seed)}:{stem}:{mode}:{int(attempt)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def eta_seed(seed: int) -> int:
    """The per-step noise seed (η > 0) that goes with an x_T seed."""
    digest = hashlib.sha256(f"dre-edit-eta:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class Draw:
    """One draw of one job: which attempt, from which seed, and how it scored."""

    job: int
    attempt: int  # 0 = the first draw
    seed: int | None  # x_T seed (None: the first draw of --init inversion)
    init: str  # noise | inversion
    row: dict  # score columns


@dataclass
class ScoredEdits:
    """Every job's kept draw with its scores, and the record of every draw (``dre edit``'s scores)."""

    images: np.ndarray  # (J, 3, H, W) the kept draw of every job, in [-1, 1]
    rows: list[dict]  # score columns of the kept draw
    kept: list[int]  # attempt index kept per job
    draws: list[Draw]  # every draw, in order (first draws, then retry rounds)
    summary: dict = field(default_factory=dict)  # summary.json (filled in by dre.edit.scoring)


def retry_failed(
    n_max: int,
    images: np.ndarray,
    rows: list[dict],
    *,
    first_seeds: Sequence[int | None],
    init: str,
    job_names: Sequence[tuple[str, str]],
    seed: int,
    draw: Callable[[list[int], list[int]], np.ndarray],
    score: Callable[[list[int], np.ndarray], list[dict]],
    retryable: Sequence[bool] | None = None,
) -> ScoredEdits:
    """Re-draw the failed jobs up to ``n_max`` times each; ``draw(jobs, seeds)`` samples pictures and
    ``score(jobs, pictures)`` scores them (both batched over the jobs of one round). ``retryable`` (default:
    every job) leaves out jobs that must keep their first x_T: frames of a sequence, whose noise is shared
    with the other frames so that only the conditions change (a re-drawn frame would jump)."""
    best = np.array(images, copy=True)
    best_rows = [dict(r) for r in rows]
    kept = [0] * len(rows)
    draws = [Draw(k, 0, first_seeds[k], init, dict(r)) for k, r in enumerate(rows)]
    pending = [k for k, r in enumerate(best_rows) if r["failed"] and (retryable is None or retryable[k])]
    for attempt in range(1, int(n_max) + 1):
        if not pending:
            break
        seeds = [retry_seed(seed, *job_names[k], attempt) for k in pending]
        pics = draw(pending, seeds)
        new_rows = score(pending, pics)
        for idx, k in enumerate(pending):
            draws.append(Draw(k, attempt, seeds[idx], "noise", dict(new_rows[idx])))
            if rank_key(new_rows[idx]) < rank_key(best_rows[k]):
                best[k], best_rows[k], kept[k] = pics[idx], dict(new_rows[idx]), attempt
        pending = [k for k in pending if best_rows[k]["failed"]]
    return ScoredEdits(best, best_rows, kept, draws)
